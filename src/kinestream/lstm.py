"""The augmenter's LSTM models advanced one frame at a time.

Each trained augmenter model is a stack of unidirectional LSTM layers
followed by a dense layer, exported as a whole-sequence graph that loops over
time. Such a model is causal: its output at frame t depends only on frames up
to t, through the per-layer state (hidden h and cell c). Carrying that state
from one call to the next gives the whole-sequence result at a constant cost
per frame.

This module reads the weights out of the shipped graph and builds a new,
small ONNX graph for one step of the stack:

    inputs   x (1, 1, n_in)       normalised model inputs of one frame
             h, c (L, 1, u)       state of the L layers before the frame
    outputs  y (1, n_out)         normalised model outputs of the frame
             h', c' (L, 1, u)     state after the frame

For each layer (weights K (n_in, 4u), R (u, 4u), b (4u,)):

    z  = x K + h R + b            split into gates i, f, g, o
    i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);  g = tanh(z_g)
    c' = f * c + i * g
    h' = o * tanh(c')             (h' is the next layer's x)

and the dense layer maps the last layer's h' to y. The gate order and the
gate activation are read from the shipped graph (which gate output multiplies
the previous cell state, which one is the tanh candidate, ...), not assumed;
the shipped models store the gates as i, f, g, o with sigmoid gates. In the
step graph each layer is one ONNX ``LSTM`` node run for one time step, whose
weights are ordered i, o, f, g (ONNX calls g "c").

Several stacks (lower- and upper-body model) share one step graph, so one
onnxruntime call advances them all. Before a graph is built the stack read
from a model is checked against the model itself on a fixed input sequence.
Built graphs are cached in memory, keyed by the content of the source models;
building is deterministic.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kinestream.errors import AssetError

GATES = ("i", "f", "g", "o")  # canonical order of the stored weight columns
_GATE_ACTIVATIONS = {"Sigmoid", "HardSigmoid"}
_OUTPUT_ACTIVATIONS = {"Relu", "Sigmoid", "Tanh", "Softmax", "LeakyRelu", "Elu", "Selu", "HardSigmoid", "Softplus"}
OPSET = 17


@dataclass
class LstmLayer:
    """Weights of one LSTM layer, gate columns in the order ``GATES``."""

    kernel: np.ndarray  # (n_in, 4u)
    recurrent: np.ndarray  # (u, 4u)
    bias: np.ndarray  # (4u,)

    @property
    def units(self) -> int:
        """The number of units of the layer."""
        return self.recurrent.shape[0]

    @property
    def n_inputs(self) -> int:
        """The number of inputs of the layer."""
        return self.kernel.shape[0]


@dataclass
class LstmStack:
    """An LSTM stack and its dense output layer, as read from a trained model."""

    layers: list[LstmLayer]
    dense_w: np.ndarray  # (u, n_out)
    dense_b: np.ndarray  # (n_out,)
    gate_order: tuple[str, ...]  # order of the gates in the source graph's weight columns
    gate_activation: str  # "Sigmoid", or "HardSigmoid(alpha,beta)"
    hard_sigmoid: tuple[float, float] | None = None  # (alpha, beta) when the gates use hard sigmoid

    @property
    def units(self) -> int:
        """The number of units of each layer."""
        return self.layers[0].units

    @property
    def n_layers(self) -> int:
        """The number of LSTM layers."""
        return len(self.layers)

    @property
    def n_inputs(self) -> int:
        """The number of inputs of the stack."""
        return self.layers[0].n_inputs

    @property
    def n_outputs(self) -> int:
        """The number of outputs of the dense layer."""
        return self.dense_w.shape[1]

    def zero_state(self) -> tuple[np.ndarray, np.ndarray]:
        """The stack's state before the first frame: hidden and cell states of zeros, (layers, units) each."""
        shape = (self.n_layers, self.units)
        return np.zeros(shape, np.float32), np.zeros(shape, np.float32)

    def _gate(self, z: np.ndarray) -> np.ndarray:
        if self.hard_sigmoid is not None:
            alpha, beta = self.hard_sigmoid
            return np.clip(alpha * z + beta, 0.0, 1.0)
        return 1.0 / (1.0 + np.exp(-z))

    def run(self, x: np.ndarray, h: np.ndarray | None = None, c: np.ndarray | None = None):
        """Reference implementation in numpy (float64): (frames, n_in) -> (frames, n_out), final h, c."""
        x = np.asarray(x, dtype=np.float64)
        if h is None or c is None:
            h, c = self.zero_state()
        h = np.array(h, dtype=np.float64)
        c = np.array(c, dtype=np.float64)
        u = self.units
        out = np.empty((len(x), self.n_outputs))
        for t, xt in enumerate(x):
            inp = xt
            for k, layer in enumerate(self.layers):
                z = inp @ layer.kernel + h[k] @ layer.recurrent + layer.bias
                i, f, o = (self._gate(z[j * u : (j + 1) * u]) for j in (0, 1, 3))
                g = np.tanh(z[2 * u : 3 * u])
                c[k] = f * c[k] + i * g
                h[k] = o * np.tanh(c[k])
                inp = h[k]
            out[t] = inp @ self.dense_w + self.dense_b
        return out, h, c


# --------------------------------------------------------------------------------------------------------
# Reading the stack out of the whole-sequence graph


def _attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _fail(path: Path, why: str) -> AssetError:
    return AssetError(
        f"augmenter model {path} is not a stack of LSTM layers and a dense layer that "
        f"kinestream can run frame by frame ({why}); use mode='windowed', which runs the "
        f"model as it is",
        given=path,
        valid="mode='windowed'",
    )


def _read_layer(path: Path, loop, inits: dict[str, np.ndarray]) -> tuple[LstmLayer, tuple, str, tuple | None]:
    """Weights, gate order and gate activation of one LSTM layer from its time loop."""
    from onnx import numpy_helper

    body = _attr(loop, "body")
    # Loop-carried body inputs line up with the Loop node's inputs from index 2 on.
    outer = {b.name: loop.input[j] for j, b in enumerate(body.input) if 2 <= j < len(loop.input)}
    carried = {b.name for b in body.input[2:]}  # the state, and the weights passed in as loop variables
    local_inits = {i.name: numpy_helper.to_array(i) for i in body.initializer}

    def value(name):
        """The constant behind a body tensor name, or None."""
        if name in local_inits:
            return local_inits[name]
        return inits.get(outer.get(name, name))

    producer = {o: n for n in body.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in body.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    splits = [n for n in body.node if n.op_type == "Split" and len(n.output) == 4]
    if len(splits) != 1:
        raise _fail(path, f"loop {loop.name} has {len(splits)} four-way gate splits, expected 1")
    split = splits[0]

    # z = x K + h R + b: flatten the sum that feeds the gate split
    def terms(name):
        node = producer.get(name)
        if node is not None and node.op_type == "Add":
            return terms(node.input[0]) + terms(node.input[1])
        return [name]

    kernel = recurrent = bias = None
    for term in terms(split.input[0]):
        node = producer.get(term)
        if node is not None and node.op_type == "MatMul":
            w = value(node.input[1])
            if w is None or w.ndim != 2:
                raise _fail(path, f"a gate product in {loop.name} has no constant weight matrix")
            if node.input[0] in carried:
                recurrent = w
            else:
                kernel = w
        else:
            b = value(term)
            if b is None or b.ndim != 1:
                raise _fail(path, f"a gate term in {loop.name} is neither a product nor a constant bias")
            bias = b
    if kernel is None or recurrent is None:
        raise _fail(path, f"no input or recurrent weight matrix found in {loop.name}")
    u = recurrent.shape[0]
    if recurrent.shape != (u, 4 * u) or kernel.shape[1] != 4 * u:
        raise _fail(path, f"weight shapes {kernel.shape}, {recurrent.shape} in {loop.name} are not LSTM shapes")
    if bias is None:
        bias = np.zeros(4 * u, np.float32)

    # the role of each of the four gate slices, from how the cell uses them
    act = []
    for s in split.output:
        users = consumers.get(s, [])
        if len(users) != 1 or users[0].op_type not in _GATE_ACTIVATIONS | {"Tanh"}:
            raise _fail(path, f"gate slice {s} in {loop.name} does not feed one activation")
        act.append(users[0])
    role: dict[str, int] = {}
    tanh_slices = [k for k, a in enumerate(act) if a.op_type == "Tanh"]
    if len(tanh_slices) != 1:
        raise _fail(path, f"{len(tanh_slices)} tanh gate slices in {loop.name}, expected 1")
    role["g"] = tanh_slices[0]
    g_out = act[role["g"]].output[0]
    for k, a in enumerate(act):
        if k == role["g"]:
            continue
        for m in consumers.get(a.output[0], []):
            if m.op_type != "Mul":
                continue
            other = m.input[1] if m.input[0] == a.output[0] else m.input[0]
            if other in carried:
                role["f"] = k  # multiplies the previous cell state
            elif other == g_out:
                role["i"] = k  # multiplies the candidate
            elif producer.get(other) is not None and producer[other].op_type == "Tanh":
                role["o"] = k  # multiplies tanh of the new cell state
    if sorted(role) != sorted(GATES):
        raise _fail(path, f"could not tell the gates of {loop.name} apart (found {sorted(role)})")
    kinds = {act[role[q]].op_type for q in ("i", "f", "o")}
    if len(kinds) != 1:
        raise _fail(path, f"mixed gate activations {kinds} in {loop.name}")
    kind = kinds.pop()
    hard = None
    if kind == "HardSigmoid":
        a = act[role["i"]]
        hard = (float(_attr(a, "alpha", 0.2)), float(_attr(a, "beta", 0.5)))
        kind = f"HardSigmoid({hard[0]:g},{hard[1]:g})"

    order = tuple(sorted(GATES, key=lambda q: role[q]))  # source order of the slices

    def canonical(w):
        return np.concatenate([w[..., role[q] * u : (role[q] + 1) * u] for q in GATES], axis=-1).astype(np.float32)

    layer = LstmLayer(canonical(kernel), canonical(recurrent), canonical(bias))
    return layer, order, kind, hard


def read_stack(model_path: str | Path) -> LstmStack:
    """The LSTM stack and dense layer of a whole-sequence augmenter model (.onnx)."""
    import onnx
    from onnx import numpy_helper

    path = Path(model_path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise AssetError(f"augmenter model {path} could not be read: {exc}", given=path) from None
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    loops = [
        n
        for n in graph.node
        if n.op_type == "Loop" and any(m.op_type == "Split" and len(m.output) == 4 for m in _attr(n, "body").node)
    ]
    if not loops:
        raise _fail(path, "no LSTM time loop found")
    layers, orders, kinds, hard = [], set(), set(), None
    for loop in loops:  # graph nodes are in topological order: first layer first
        layer, order, kind, hs = _read_layer(path, loop, inits)
        layers.append(layer)
        orders.add(order)
        kinds.add(kind)
        hard = hs
    if len(orders) != 1 or len(kinds) != 1:
        raise _fail(path, f"layers differ in gate order or activation ({orders}, {kinds})")
    if len({layer.units for layer in layers}) != 1:
        raise _fail(path, "the layers have different numbers of units")
    for a, b in zip(layers, layers[1:], strict=False):
        if b.n_inputs != a.units:
            raise _fail(path, f"a layer with {a.units} units feeds a layer reading {b.n_inputs} inputs")
    n_in = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim][-1]
    if n_in and n_in != layers[0].n_inputs:
        raise _fail(path, f"the model reads {n_in} inputs but its first layer {layers[0].n_inputs}")

    # dense layer: the one top-level product with a constant (units, n_out) matrix, plus its bias
    u = layers[-1].units
    dense = [
        (n, inits[n.input[1]])
        for n in graph.node
        if n.op_type in ("MatMul", "Gemm")
        and n.input[1] in inits
        and inits[n.input[1]].ndim == 2
        and inits[n.input[1]].shape[0] == u
    ]
    if len(dense) != 1:
        raise _fail(path, f"{len(dense)} dense layers after the LSTM layers, expected 1")
    dense_w = dense[0][1]
    n_out = dense_w.shape[1]
    biases = [
        inits[i]
        for n in graph.node
        if n.op_type in ("Add", "Gemm")
        for i in n.input
        if i in inits and inits[i].dtype == np.float32 and inits[i].shape == (n_out,)
    ]
    if len(biases) > 1:
        raise _fail(path, "more than one candidate bias for the dense layer")
    dense_b = biases[0] if biases else np.zeros(n_out, np.float32)
    acts = sorted({n.op_type for n in graph.node if n.op_type in _OUTPUT_ACTIVATIONS})
    if acts:
        raise _fail(path, f"activation {acts} outside the LSTM cells")
    return LstmStack(layers, dense_w.astype(np.float32), dense_b.astype(np.float32), orders.pop(), kinds.pop(), hard)


# --------------------------------------------------------------------------------------------------------
# The one-step graph


def _const(name: str, array) -> object:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.ascontiguousarray(array), name)


def _add_stack(prefix: str, stack: LstmStack, nodes: list, inits: list, inputs: list, outputs: list) -> None:
    from onnx import TensorProto, helper

    u, n_layers = stack.units, stack.n_layers
    f32 = TensorProto.FLOAT
    x, h, c = f"{prefix}.x", f"{prefix}.h", f"{prefix}.c"
    state = [n_layers, 1, u]
    inputs += [
        helper.make_tensor_value_info(x, f32, [1, 1, stack.n_inputs]),
        helper.make_tensor_value_info(h, f32, state),
        helper.make_tensor_value_info(c, f32, state),
    ]
    outputs += [
        helper.make_tensor_value_info(f"{prefix}.y", f32, [1, stack.n_outputs]),
        helper.make_tensor_value_info(f"{prefix}.h_next", f32, state),
        helper.make_tensor_value_info(f"{prefix}.c_next", f32, state),
    ]
    if n_layers > 1:
        hs = [f"{prefix}.h{k}" for k in range(n_layers)]
        cs = [f"{prefix}.c{k}" for k in range(n_layers)]
        inits.append(_const(f"{prefix}.split_layers", np.ones(n_layers, np.int64)))
        nodes.append(helper.make_node("Split", [h, f"{prefix}.split_layers"], hs, axis=0))
        nodes.append(helper.make_node("Split", [c, f"{prefix}.split_layers"], cs, axis=0))
    else:
        hs, cs = [h], [c]
    # ONNX's LSTM operator orders the gates i, o, f, c (c: the tanh candidate, g here) and stores
    # weights as (directions, 4u, n_in); B is the input bias followed by the recurrent bias.
    perm = np.r_[0:u, 3 * u : 4 * u, u : 2 * u, 2 * u : 3 * u]
    gate = "HardSigmoid" if stack.hard_sigmoid else "Sigmoid"
    extra: dict[str, Any] = {}
    if stack.hard_sigmoid:
        extra = dict(
            activation_alpha=[stack.hard_sigmoid[0], 1.0, 1.0], activation_beta=[stack.hard_sigmoid[1], 0.0, 0.0]
        )
    inp = x
    h_new, c_new = [], []
    for k, layer in enumerate(stack.layers):
        p = f"{prefix}.l{k}"
        inits += [
            _const(f"{p}.W", layer.kernel[:, perm].T[None]),
            _const(f"{p}.R", layer.recurrent[:, perm].T[None]),
            _const(f"{p}.B", np.concatenate([layer.bias[perm], np.zeros(4 * u, np.float32)])[None]),
        ]
        # one time step: Y_h (directions=1, batch=1, u) is also the next layer's (seq=1, batch=1, u) input
        nodes.append(
            helper.make_node(
                "LSTM",
                [inp, f"{p}.W", f"{p}.R", f"{p}.B", "", hs[k], cs[k]],
                ["", f"{p}.h_new", f"{p}.c_new"],
                hidden_size=u,
                activations=[gate, "Tanh", "Tanh"],
                **extra,
            )
        )
        inp = f"{p}.h_new"
        h_new.append(f"{p}.h_new")
        c_new.append(f"{p}.c_new")
    inits += [
        _const(f"{prefix}.Wd", stack.dense_w),
        _const(f"{prefix}.bd", stack.dense_b),
        _const(f"{prefix}.row", np.array([1, u], np.int64)),
    ]
    nodes += [
        helper.make_node("Reshape", [inp, f"{prefix}.row"], [f"{prefix}.h_last"]),
        helper.make_node("Gemm", [f"{prefix}.h_last", f"{prefix}.Wd", f"{prefix}.bd"], [f"{prefix}.y"]),
    ]
    if n_layers > 1:
        nodes += [
            helper.make_node("Concat", h_new, [f"{prefix}.h_next"], axis=0),
            helper.make_node("Concat", c_new, [f"{prefix}.c_next"], axis=0),
        ]
    else:
        nodes += [
            helper.make_node("Identity", h_new, [f"{prefix}.h_next"]),
            helper.make_node("Identity", c_new, [f"{prefix}.c_next"]),
        ]


def build_step_model(stacks: dict[str, LstmStack]):
    """An ONNX model that advances every stack in ``stacks`` by one frame.

    For a stack named ``p`` the model reads ``p.x`` (1, 1, n_in), ``p.h`` and
    ``p.c`` (layers, 1, units) and returns ``p.y`` (1, n_out), ``p.h_next``
    and ``p.c_next``. Each layer is one ONNX LSTM node run for one time step
    (fewer nodes, hence less overhead per frame, than the cell written out
    with MatMul/Sigmoid/Tanh nodes).
    """
    import onnx
    from onnx import helper

    nodes: list = []
    inits: list = []
    inputs: list = []
    outputs: list = []
    for prefix, stack in stacks.items():
        _add_stack(prefix, stack, nodes, inits, inputs, outputs)
    graph = helper.make_graph(nodes, "augmenter_step", inputs, outputs, inits)
    model = helper.make_model(graph, producer_name="kinestream", opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# --------------------------------------------------------------------------------------------------------
# Checking, caching and running


BUILD_VERSION = 2  # part of the cache key: bump when the built graph changes
_CACHE: dict[tuple, bytes] = {}
_LOCK = threading.Lock()


def cpu_session(model: str | Path | bytes, threads: int = 1):
    """An onnxruntime session of ``model`` (a file, or a model's bytes) on the CPU, quiet but for errors.

    ``threads`` threads in an operator. The package imports onnxruntime here only, when the first augmenter starts.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(
        model if isinstance(model, bytes) else str(model), opts, providers=["CPUExecutionProvider"]
    )


def check_stack(model_path: str | Path, stack: LstmStack, frames: int = 24, tol: float = 1e-4) -> float:
    """Largest difference between the shipped model and ``stack`` on a fixed random input sequence.

    Raises KinestreamError when it exceeds ``tol`` (normalised output units):
    the weights were read, or the cell understood, wrongly.
    """
    x = np.random.default_rng(7).standard_normal((frames, stack.n_inputs)).astype(np.float32)
    sess = cpu_session(model_path)
    ref = sess.run(None, {sess.get_inputs()[0].name: x[None]})[0][0]
    ours = stack.run(x)[0]
    diff = float(np.max(np.abs(ours - ref)))
    if not diff <= tol:
        raise _fail(Path(model_path), f"the cell read from it differs from the model by {diff:.3g}")
    return diff


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as exc:
        raise AssetError(f"augmenter model {path} could not be read: {exc.strerror}", given=path) from None


def step_model_bytes(models: dict[str, str | Path], verify: bool = True) -> bytes:
    """The serialised one-step model for the named whole-sequence models, built once per process.

    The cache key is the content of the source models, so a changed file is rebuilt.
    """
    key = (BUILD_VERSION, verify) + tuple((name, _digest(Path(p))) for name, p in models.items())
    with _LOCK:
        data = _CACHE.get(key)
        if data is None:
            stacks = {name: read_stack(p) for name, p in models.items()}
            if verify:
                for name, p in models.items():
                    check_stack(p, stacks[name])
            data = build_step_model(stacks).SerializeToString()
            _CACHE[key] = data
    return data


class StepModel:
    """One onnxruntime session that advances several LSTM stacks by one frame.

    ``models`` maps a name to a whole-sequence model; :meth:`step` takes, in
    that order, ``(x, h, c)`` or None for each stack and runs once for all of
    them. A stack given None is not advanced and gets None back.
    """

    def __init__(self, models: dict[str, str | Path], threads: int = 1, verify: bool = True):
        self.session = cpu_session(step_model_bytes(models, verify), threads)
        self.names = list(models)
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self.n_inputs = [shapes[f"{n}.x"][2] for n in self.names]
        self.state_shapes = [tuple(shapes[f"{n}.h"]) for n in self.names]
        self._keys = [(f"{n}.x", f"{n}.h", f"{n}.c") for n in self.names]
        self._outputs = [f"{n}.{o}" for n in self.names for o in ("y", "h_next", "c_next")]
        self._feed: dict[str, np.ndarray] = {}
        for k, keys in enumerate(self._keys):
            h, c = self.zero_state(k)
            self._feed.update(zip(keys, (np.zeros((1, 1, self.n_inputs[k]), np.float32), h, c), strict=False))

    def zero_state(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Zero h and c, (layers, 1, units) each, of stack number ``k``."""
        shape = self.state_shapes[k]
        return np.zeros(shape, np.float32), np.zeros(shape, np.float32)

    def step(
        self, inputs: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
        """``(x (1, 1, n_in), h, c)`` per stack in, ``(y (1, n_out), h_next, c_next)`` out."""
        feed = self._feed
        for keys, given in zip(self._keys, inputs, strict=False):
            if given is not None:
                feed[keys[0]], feed[keys[1]], feed[keys[2]] = given
        out = self.session.run(self._outputs, feed)
        return [
            None if given is None else (out[3 * k], out[3 * k + 1], out[3 * k + 2]) for k, given in enumerate(inputs)
        ]
