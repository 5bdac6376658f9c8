"""Auto-mode cases, run in ONE subprocess on the emulated NPU (see conftest.py).

Auto mode and the emulator are process-wide, so they must not leak into other tests: pytest runs
this file as a script (``python emulated_cases.py RESULT.json``) with the emulator's environment.
Each case calls patched APIs with CUDA-style arguments and asserts on the outcome; the result of
every case (and the list of patched names each one covers) goes into RESULT.json, and
test_patched_names.py turns each case into one pytest test.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import traceback
import warnings

import torch
import torch_npu  # noqa: F401  - the emulator's stand-in: activates the npu device

CASES: dict = {}


def case(*covers: str):
    """Register a case; ``covers`` are the patched names (``patched_names()`` keys) it exercises."""

    def register(function):
        CASES[function.__name__] = (function, covers)
        return function

    return register


NPU0 = torch.device("npu", 0)


def outcome(call):
    """What a call does, comparable across spellings: result device/shape/dtype, or the error."""
    try:
        value = call()
    except Exception as error:  # noqa: BLE001 - the error itself is the outcome being compared
        return ("error", type(error).__name__, str(error).replace("npu", "<dev>")[:200])
    if isinstance(value, torch.Tensor):
        return ("tensor", str(value.device), tuple(value.shape), str(value.dtype))
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return ("tensors", tuple((str(v.device), tuple(v.shape)) for v in value))
    return ("value", type(value).__name__)


# ------------------------------------------------------------------ snapshot for reversibility

def _owners():
    import torch.distributed.distributed_c10d as c10d

    owners = {
        "torch": torch, "torch.Tensor": torch.Tensor, "torch.nn.Module": torch.nn.Module,
        "torch.cuda": torch.cuda, "torch.cuda.amp": torch.cuda.amp, "torch.cuda.nvtx": torch.cuda.nvtx,
        "torch.cuda.random": torch.cuda.random, "torch.cuda.memory": torch.cuda.memory,
        "torch.amp": torch.amp, "torch.fft": torch.fft, "torch.distributed": torch.distributed,
        "c10d": c10d, "DDP": torch.nn.parallel.DistributedDataParallel,
        "autocast": torch.amp.autocast_mode.autocast, "GradScaler": torch.amp.grad_scaler.GradScaler,
        "DataLoader": torch.utils.data.DataLoader, "profile": torch.profiler.profile,
        "UntypedStorage": torch.UntypedStorage, "TypedStorage": torch.TypedStorage,
        "PackedSequence": torch.nn.utils.rnn.PackedSequence,
    }
    return owners


def _snapshot():
    return {name: dict(vars(owner)) for name, owner in _owners().items()}


def _diff(before, after):
    changed = []
    for owner, attrs in before.items():
        now = after[owner]
        for key in set(attrs) | set(now):
            if attrs.get(key, "<missing>") is not now.get(key, "<missing>"):
                changed.append(f"{owner}.{key}")
    return sorted(changed)


PRISTINE = _snapshot()
FILTERS_BEFORE = list(warnings.filters)

import transplant.auto as auto  # noqa: E402  - installs the patches (torch is already imported)

INSTALLED = _snapshot()


@case()
def install_is_idempotent_and_reversible():
    assert auto.is_installed()
    assert _diff(PRISTINE, INSTALLED), "install() changed nothing"
    assert auto.install() is False, "second install() must be a no-op"
    assert _diff(INSTALLED, _snapshot()) == []
    # a second `import transplant.auto` (e.g. from `transplant run`'s bootstrap) changes nothing
    import transplant.auto  # noqa: F401

    assert _diff(INSTALLED, _snapshot()) == []
    assert auto.uninstall() is True
    assert _diff(PRISTINE, _snapshot()) == [], "uninstall() left patches behind"
    assert torch.zeros is PRISTINE["torch"]["zeros"]
    assert auto.uninstall() is False, "second uninstall() must be a no-op"
    assert auto.install() is True
    labels = set(auto.patched_names())
    assert "torch.zeros" in labels and "torch.cuda.is_available" in labels


@case()
def warning_filters_untouched():
    assert list(warnings.filters) == FILTERS_BEFORE


@case()
def jit_script_still_compiles():
    def add(a, b):
        return a + b

    scripted = torch.jit.script(add)
    assert isinstance(scripted, torch.jit.ScriptFunction), type(scripted)
    assert scripted(torch.ones(1), torch.ones(1)).item() == 2.0


# ------------------------------------------------------------------ factories

t = torch.ones(2)
FACTORY_ARGS = {
    "zeros": ((2, 3),), "ones": ((2, 3),), "empty": ((2, 3),), "rand": ((2, 3),), "randn": ((2, 3),),
    "arange": (5,), "range": (0, 4), "linspace": (0, 1, 5), "logspace": (0, 1, 5), "eye": (3,),
    "full": ((2,), 1.5), "randint": (0, 10, (3,)), "randperm": (5,), "normal": (0.0, 1.0, (3,)),
    "scalar_tensor": (1.0,), "tensor": ([1.0, 2.0],), "as_tensor": ([1.0, 2.0],), "asarray": ([1, 2],),
    "tril_indices": (3, 3), "triu_indices": (3, 3), "bartlett_window": (5,), "blackman_window": (5,),
    "hamming_window": (5,), "hann_window": (5,), "kaiser_window": (5,), "empty_strided": ((2, 2), (2, 1)),
    "empty_permuted": ((2, 3), (1, 0)), "zeros_like": (t,), "ones_like": (t,), "empty_like": (t,),
    "rand_like": (t,), "randn_like": (t,), "full_like": (t, 3.0), "randint_like": (t, 5),
}
# Must work on the emulated NPU; the exotic rest must behave exactly like the NPU spelling.
MUST_WORK = set(FACTORY_ARGS) - {"empty_permuted", "asarray"}
EXOTIC_ARGS = {
    "sparse_coo_tensor": (torch.tensor([[0, 1], [1, 0]]), torch.tensor([1.0, 2.0]), (2, 2)),
    "sparse_csr_tensor": (torch.tensor([0, 1, 2]), torch.tensor([0, 1]), torch.tensor([1.0, 2.0]), (2, 2)),
    "sparse_csc_tensor": (torch.tensor([0, 1, 2]), torch.tensor([0, 1]), torch.tensor([1.0, 2.0]), (2, 2)),
    "sparse_bsr_tensor": (torch.tensor([0, 1]), torch.tensor([0]), torch.ones(1, 2, 2), (2, 2)),
    "sparse_bsc_tensor": (torch.tensor([0, 1]), torch.tensor([0]), torch.ones(1, 2, 2), (2, 2)),
    "sparse_compressed_tensor": (torch.tensor([0, 1, 2]), torch.tensor([0, 1]), torch.tensor([1.0, 2.0]), (2, 2)),
    "_efficientzerotensor": ((2,),),
    "_pin_memory": (t,),
    "_cudnn_init_dropout_state": (0.5, True, 0),
}
EXOTIC_KWARGS = {
    "sparse_compressed_tensor": {"layout": torch.sparse_csr},
    "_cudnn_init_dropout_state": {"dtype": torch.uint8},
}


def _factory_case(name, args, kwargs, must_work):
    def run():
        function = getattr(torch, name)
        for spelling, expected in (("cuda", "npu"), ("cuda:0", "npu:0"), (torch.device("cuda"), "npu"),
                                   (torch.device("cuda", 0), "npu:0")):
            got = outcome(lambda: function(*args, device=spelling, **kwargs))
            want = outcome(lambda: function.__wrapped__(*args, device=expected, **kwargs))
            assert got == want, (spelling, got, want)
            if must_work:
                assert got[0] == "tensor" and got[1] == "npu:0", got
        # an int in `device=` is an accelerator index
        assert outcome(lambda: function(*args, device=0, **kwargs)) == \
            outcome(lambda: function.__wrapped__(*args, device="npu:0", **kwargs))
        # a CPU request stays on the CPU
        if must_work:
            assert function(*args, device="cpu", **kwargs).device.type == "cpu"

    run.__name__ = f"factory_{name.strip('_')}"
    CASES[run.__name__] = (run, (f"torch.{name}",))


for _name, _args in FACTORY_ARGS.items():
    _factory_case(_name, _args, {}, _name in MUST_WORK)
for _name, _args in EXOTIC_ARGS.items():
    _factory_case(_name, _args, EXOTIC_KWARGS.get(_name, {}), False)


@case("torch._empty_affine_quantized", "torch._empty_per_channel_affine_quantized", "torch.empty_quantized")
def factory_quantized():
    calls = {
        "_empty_affine_quantized": lambda d: torch._empty_affine_quantized((2,), scale=1.0, zero_point=0,
                                                                          dtype=torch.quint8, device=d),
        "_empty_per_channel_affine_quantized": lambda d: torch._empty_per_channel_affine_quantized(
            (2,), scales=torch.ones(2), zero_points=torch.zeros(2, dtype=torch.long), axis=0,
            dtype=torch.quint8, device=d),
    }
    for name, call in calls.items():
        wrapped = getattr(torch, name)
        original = wrapped.__wrapped__
        setattr(torch, name, original)
        try:
            want = outcome(lambda: call("npu"))
        finally:
            setattr(torch, name, wrapped)
        assert outcome(lambda: call("cuda")) == want, name
    q = torch.quantize_per_tensor(torch.ones(2), 1.0, 0, torch.quint8)
    assert outcome(lambda: torch.empty_quantized((2,), q, device="cuda")) == \
        outcome(lambda: torch.empty_quantized.__wrapped__((2,), q, device="npu"))


@case("torch.from_file")
def factory_from_file():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cuda_data.bin")
        with open(path, "wb") as handle:
            handle.write(b"\0" * 16)
        got = outcome(lambda: torch.from_file(path, size=4, device="cuda"))
        want = outcome(lambda: torch.from_file.__wrapped__(path, size=4, device="npu"))
        assert got == want, (got, want)


@case("torch.fft.fftfreq", "torch.fft.rfftfreq")
def factory_fftfreq():
    for name in ("fftfreq", "rfftfreq"):
        function = getattr(torch.fft, name)
        got = function(4, device="cuda")
        assert got.device == NPU0 and torch.equal(got.cpu(), function(4).cpu())


@case("torch.set_default_device", "torch.get_device_module")
def default_device_and_device_module():
    assert torch.get_device_module("cuda") is torch.npu
    assert torch.get_device_module(torch.device("cuda:0")) is torch.npu
    torch.set_default_device("cuda")
    try:
        assert torch.zeros(1).device == NPU0
    finally:
        torch.set_default_device(None)
    assert torch.zeros(1).device.type == "cpu"


@case("torch.utils._device.DeviceContext")
def device_context_manager():
    with torch.device("cuda"):
        x = torch.ones(2)
    assert x.device == NPU0, x.device
    assert "torch.utils._device.DeviceContext" in auto.patched_names()


# ------------------------------------------------------------------ Tensor / Module

@case("torch.Tensor.to")
def tensor_to_device_spellings():
    x = torch.arange(4.0)
    for spelling in ("cuda", "cuda:0", torch.device("cuda"), torch.device("cuda", 0), 0):
        y = x.to(spelling)
        assert y.device == NPU0 and torch.equal(y.cpu(), x), spelling
        assert x.to(device=spelling).device == NPU0
    assert x.to("cuda", torch.float16).dtype == torch.float16
    assert x.to("cuda", non_blocking=True).device == NPU0
    assert x.to(torch.float64).device.type == "cpu"
    assert x.to(torch.ones(1, device="cuda")).device == NPU0
    assert x.to("cuda").to("cpu").device.type == "cpu"


@case(*[f"torch.Tensor.{n}" for n in ("new_empty", "new_empty_strided", "new_full", "new_ones", "new_tensor", "new_zeros")])
def tensor_new_methods():
    x = torch.ones(2)
    made = [
        x.new_empty((2,), device="cuda"), x.new_empty_strided((2,), (1,), device="cuda:0"),
        x.new_full((2,), 3.0, device=torch.device("cuda")), x.new_ones(2, device="cuda"),
        x.new_tensor([1.0, 2.0], device="cuda"), x.new_zeros(2, device=0),
    ]
    assert all(m.device == NPU0 for m in made), [m.device for m in made]
    assert made[2].cpu().tolist() == [3.0, 3.0]


@case("torch.Tensor.cuda")
def tensor_cuda_method():
    x = torch.arange(3.0)
    for y in (x.cuda(), x.cuda(0), x.cuda("cuda:0"), x.cuda(torch.device("cuda")), x.cuda(non_blocking=True),
              x.cuda(device=0)):
        assert y.device == NPU0 and torch.equal(y.cpu(), x)


@case("torch.Tensor.is_cuda", "torch.UntypedStorage.is_cuda", "torch.TypedStorage.is_cuda")
def is_cuda_for_user_code_only():
    x = torch.ones(1, device="cuda")
    assert x.is_cuda is True and x.is_npu
    assert torch.ones(1).is_cuda is False
    # torch itself (and libraries with native NPU support) must see the truth
    namespace = {"__name__": "torch.nn.functional_fake", "x": x}
    exec("result = x.is_cuda", namespace)
    assert namespace["result"] is False
    namespace = {"__name__": "transformers.modeling_utils", "x": x}
    exec("result = x.is_cuda", namespace)
    assert namespace["result"] is False
    storage = x.untyped_storage()
    assert storage.is_cuda == (storage.device.type == "npu")
    assert torch.ones(1).untyped_storage().is_cuda is False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        typed = x.storage()
    assert typed.is_cuda == (typed.device.type == "npu")


@case("torch.Tensor.pin_memory", "torch.Tensor.is_pinned", "torch.utils.data.DataLoader")
def pin_memory_paths():
    x = torch.ones(4)
    pinned = x.pin_memory()
    assert pinned.is_pinned() and torch.equal(pinned, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert outcome(lambda: x.pin_memory("cuda")) == outcome(lambda: torch.Tensor.pin_memory.__wrapped__(x, "npu"))
        assert outcome(lambda: x.is_pinned("cuda")) == outcome(lambda: torch.Tensor.is_pinned.__wrapped__(x, "npu"))
    data = torch.utils.data.TensorDataset(torch.arange(8.0).reshape(4, 2))
    for kwargs in ({"pin_memory": True}, {"pin_memory": True, "pin_memory_device": "cuda"}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loader = torch.utils.data.DataLoader(data, batch_size=2, **kwargs)
            batches = [b[0] for b in loader]
        assert len(batches) == 2 and all(b.is_pinned() for b in batches)
        assert torch.equal(batches[0].cuda().cpu(), torch.arange(4.0).reshape(2, 2))
    assert loader.pin_memory_device == "npu"


@case("torch.Tensor.type")
def tensor_type_strings():
    x = torch.arange(3)
    y = x.type("torch.cuda.FloatTensor")
    assert y.device == NPU0 and y.dtype == torch.float32
    assert x.type(torch.float64).dtype == torch.float64 and x.type(torch.float64).device.type == "cpu"
    assert isinstance(x.type(), str)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            z = x.type("torch.cuda.DoubleTensor")  # one call site -> one warning
    assert z.dtype == torch.float64, "no silent dtype change"
    ours = [w for w in caught if issubclass(w.category, auto.TransplantAutoWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert ours[0].filename == __file__


LEGACY_TYPES = {"BFloat16Tensor": torch.bfloat16, "BoolTensor": torch.bool, "ByteTensor": torch.uint8,
                "CharTensor": torch.int8, "DoubleTensor": torch.float64, "FloatTensor": torch.float32,
                "HalfTensor": torch.float16, "IntTensor": torch.int32, "LongTensor": torch.int64,
                "ShortTensor": torch.int16}


@case(*[f"torch.cuda.{name}" for name in LEGACY_TYPES])
def legacy_typed_tensors():
    for name, dtype in LEGACY_TYPES.items():
        cls = getattr(torch.cuda, name)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            made = [cls(2, 3), cls([1, 0])]
        for tensor in made:
            assert tensor.device == NPU0 and tensor.dtype == dtype, (name, tensor.device, tensor.dtype)
            assert isinstance(tensor, cls)
        assert not isinstance(torch.ones(1, dtype=dtype), cls), "a CPU tensor is no torch.cuda tensor type"
        ours = [w for w in caught if issubclass(w.category, auto.TransplantAutoWarning)]
        # float64 is kept (no silent FloatTensor), with one warning at the call site (rule TP106 is 'review')
        assert len(ours) == (1 if name == "DoubleTensor" else 0), (name, [str(w.message) for w in ours])
        if ours:
            assert ours[0].filename == __file__ and "float64" in str(ours[0].message)


@case("torch.set_default_tensor_type")
def default_tensor_type_strings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates set_default_tensor_type itself
        try:
            torch.set_default_tensor_type("torch.cuda.HalfTensor")
            x = torch.zeros(2)
            assert x.device == NPU0 and x.dtype == torch.float16
            torch.set_default_tensor_type(torch.cuda.FloatTensor)
            assert torch.ones(1).dtype == torch.float32 and torch.ones(1).device == NPU0
        finally:
            torch.set_default_device(None)
            torch.set_default_dtype(torch.float32)
        torch.set_default_tensor_type(torch.FloatTensor)
    assert torch.zeros(1).device.type == "cpu" and torch.zeros(1).dtype == torch.float32


@case("torch.nn.Module.to", "torch.nn.Module.to_empty", "torch.nn.Module.cuda")
def module_moves():
    for move in (lambda m: m.to("cuda"), lambda m: m.to(torch.device("cuda:0")), lambda m: m.to(0),
                 lambda m: m.to(device="cuda"), lambda m: m.cuda(), lambda m: m.cuda(0),
                 lambda m: m.cuda("cuda:0"), lambda m: m.to("cuda", torch.float16)):
        m = move(torch.nn.Linear(2, 2))
        assert all(p.device == NPU0 for p in m.parameters())
    with torch.device("meta"):
        m = torch.nn.Linear(2, 2)
    m = m.to_empty(device="cuda")
    assert m.weight.device == NPU0


@case("torch.nn.utils.rnn.PackedSequence.cuda")
def packed_sequence_cuda():
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.ones(3, 2, 4), [3, 2])
    moved = packed.cuda()
    assert moved.data.device == NPU0


@case()
def user_created_cuda_device_works_wherever_used():
    device = torch.device("cuda")
    indexed = torch.device("cuda", 0)
    layer = torch.nn.Linear(3, 2, device=device)  # module constructors pass it on to torch.empty
    assert layer.weight.device == NPU0
    x = torch.randn(4, 3).to(device)
    assert layer(x).device == NPU0
    assert torch.zeros(2, device=indexed).device == NPU0 and x.new_ones(2, device=device).device == NPU0
    assert torch.nn.Linear(3, 2).to(indexed).weight.device == NPU0
    torch.cuda.set_device(indexed)
    with torch.cuda.device(device):
        assert torch.cuda.current_device() == 0
    assert torch.cuda.memory_allocated(device) >= 0
    with torch.autocast(device.type):
        assert layer(x).dtype == torch.float16
    assert torch.Generator(device).initial_seed() >= 0
    with device:
        assert torch.ones(1).device == NPU0
    with tempfile.TemporaryDirectory() as tmp:
        torch.save({"w": torch.ones(1)}, os.path.join(tmp, "w.pt"))
        assert torch.load(os.path.join(tmp, "w.pt"), map_location=device)["w"].device == NPU0
    # its own fields are untouched: code branching on device.type == 'cuda' keeps its accelerator path
    assert device.type == "cuda" and str(indexed) == "cuda:0"


# ------------------------------------------------------------------ checkpoints

def _save_as_cuda(obj, path):
    """Write ``obj`` as if saved on a CUDA machine: every storage tagged ``cuda:0``."""
    import torch.serialization as serialization

    original = serialization.location_tag
    serialization.location_tag = lambda storage: "cuda:0"
    try:
        torch.save(obj, path)
    finally:
        serialization.location_tag = original


@case("torch.load")
def load_cuda_checkpoint_without_map_location():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ckpt.pt")
        state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2])}
        _save_as_cuda(state, path)
        with open(path, "rb") as handle:
            assert b"cuda:0" in handle.read(), "the crafted checkpoint must carry cuda:0 tags"
        loaded = torch.load(path)
        assert loaded["w"].device == NPU0 and torch.equal(loaded["w"].cpu(), state["w"])
        assert loaded["b"].device == NPU0 and torch.equal(loaded["b"].cpu(), state["b"])
        assert torch.load(path, map_location="cpu")["w"].device.type == "cpu"
        assert torch.load(path, weights_only=False)["w"].device == NPU0
        # without auto mode the same file fails as it would on an NPU host
        plain = torch.load.__wrapped__
        try:
            plain(path)
        except RuntimeError as error:
            assert "CUDA" in str(error)
        else:
            raise AssertionError("plain torch.load restored a cuda:0 checkpoint on a CUDA-less host")


@case("torch.load")
def load_map_location_spellings():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ckpt.pt")
        _save_as_cuda({"w": torch.ones(2)}, path)
        for spelling in ("cuda", "cuda:0", torch.device("cuda"), torch.device("cuda", 0), 0,
                         {"cuda:0": "cuda:0"}, {"cuda:1": "cpu"}):
            assert torch.load(path, map_location=spelling)["w"].device == NPU0, spelling
        assert torch.load(path, map_location={"cuda:0": "cpu"})["w"].device.type == "cpu"
        assert torch.load(path, map_location=lambda storage, location: storage)["w"].device.type == "cpu"
        # an NPU-saved checkpoint still loads as before
        npu_path = os.path.join(tmp, "npu.pt")
        torch.save({"w": torch.ones(2, device="npu")}, npu_path)
        assert torch.load(npu_path)["w"].device == NPU0
        assert torch.load(npu_path, map_location={"cuda:0": "cpu"})["w"].device.type == "cpu"


@case("torch.load")
def load_path_containing_cuda_is_untouched():
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "runs", "cuda_exp")
        os.makedirs(directory)
        path = os.path.join(directory, "model_cuda.pt")
        torch.save({"w": torch.ones(2)}, path)
        # transfer_to_npu would look for runs/npu_exp/model_npu.pt here
        assert torch.load(path)["w"].device.type == "cpu"
        assert torch.load(path, "cuda")["w"].device == NPU0  # positional map_location is a device


# ------------------------------------------------------------------ generators, streams, events

@case("torch.Generator", "torch.Stream", "torch.Event")
def generator_stream_event():
    for spelling in ("cuda", "cuda:0", torch.device("cuda")):
        generator = torch.Generator(device=spelling)
        assert isinstance(generator, torch.Generator)
        generator.manual_seed(3)
        expected = torch._C.Generator(device="npu").manual_seed(3)
        assert generator.initial_seed() == expected.initial_seed() == 3
        assert outcome(lambda: torch.Generator(spelling)) == outcome(lambda: torch._C.Generator("npu"))
    assert isinstance(torch.default_generator, torch.Generator)
    assert issubclass(torch._C.Generator, torch.Generator)

    class Seeded(torch.Generator):
        pass

    assert isinstance(Seeded(), torch.Generator)
    first = torch.randn(3, generator=torch.Generator("cuda").manual_seed(0), device="cuda")
    second = torch.randn(3, generator=torch.Generator("cuda").manual_seed(0), device="cuda")
    assert torch.equal(first.cpu(), second.cpu())
    stream_target = torch.Stream.__transplant_target__
    event_target = torch.Event.__transplant_target__
    assert outcome(lambda: torch.Stream("cuda")) == outcome(lambda: stream_target("npu"))
    assert outcome(lambda: torch.Stream(device="cuda:0")) == outcome(lambda: stream_target(device="npu:0"))
    assert outcome(lambda: torch.Event("cuda")) == outcome(lambda: event_target("npu"))
    stream = torch.Stream("cuda")
    assert stream.device_type == torch._C._autograd.DeviceType.PrivateUse1 if hasattr(stream, "device_type") and \
        not isinstance(stream.device_type, int) else True


@case("torch.cuda.Stream", "torch.cuda.Event", "torch.cuda.stream", "torch.cuda.set_stream",
      "torch.cuda.current_stream", "torch.cuda.default_stream")
def cuda_streams_and_events():
    stream = torch.cuda.Stream()
    assert isinstance(stream, torch.npu.Stream) and isinstance(stream, torch.cuda.Stream)
    stream2 = torch.cuda.Stream(device="cuda:0")
    assert isinstance(stream2, torch.npu.Stream)
    with torch.cuda.stream(stream):
        y = torch.ones(2, device="cuda") * 2
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    assert isinstance(start, torch.npu.Event)
    start.record()
    end.record()
    torch.cuda.synchronize()
    assert start.elapsed_time(end) >= 0
    assert torch.cuda.current_stream("cuda:0") is not None
    assert torch.cuda.current_stream(torch.device("cuda")) is not None
    assert torch.cuda.default_stream("cuda") is not None
    torch.cuda.set_stream(torch.cuda.default_stream())
    assert y.cpu().tolist() == [2.0, 2.0]

    class MyStream(torch.cuda.Stream):
        pass

    assert issubclass(MyStream, torch.npu.Stream)


# ------------------------------------------------------------------ AMP

@case("torch.autocast", "torch.is_autocast_enabled", "torch.get_autocast_dtype",
      "torch.set_autocast_enabled", "torch.set_autocast_dtype")
def autocast_device_type():
    layer = torch.nn.Linear(4, 4).cuda()
    x = torch.ones(2, 4, device="cuda")
    with torch.autocast("cuda"):
        assert layer(x).dtype == torch.float16
        assert torch.is_autocast_enabled("cuda") and torch.is_autocast_enabled("npu")
        assert torch.get_autocast_dtype("cuda") == torch.float16
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16
    with torch.amp.autocast("cuda", enabled=False):
        assert layer(x).dtype == torch.float32
    previous = torch.get_autocast_dtype("npu")
    torch.set_autocast_dtype("cuda", torch.bfloat16)
    assert torch.get_autocast_dtype("npu") == torch.bfloat16
    torch.set_autocast_dtype("npu", previous)
    torch.set_autocast_enabled("cuda", True)
    assert torch.is_autocast_enabled("npu")
    torch.set_autocast_enabled("cuda", False)
    assert not torch.is_autocast_enabled("npu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.nn.Linear(4, 4)(torch.ones(2, 4)).dtype == torch.bfloat16


@case("torch.is_autocast_enabled", "torch.set_autocast_enabled", "torch.get_autocast_gpu_dtype",
      "torch.set_autocast_gpu_dtype")
def autocast_cuda_era_queries():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates the *_gpu_* spellings
        with torch.autocast("cuda", dtype=torch.bfloat16):
            assert torch.is_autocast_enabled() is True
            assert torch.get_autocast_gpu_dtype() == torch.bfloat16
        assert torch.is_autocast_enabled() is False
        previous = torch.get_autocast_dtype("npu")
        torch.set_autocast_gpu_dtype(torch.bfloat16)
        assert torch.get_autocast_dtype("npu") == torch.bfloat16
        torch.set_autocast_dtype("npu", previous)
        torch.set_autocast_enabled(True)
        assert torch.is_autocast_enabled("npu")
        torch.set_autocast_enabled(False)
        assert not torch.is_autocast_enabled("npu")
        # torch's own code keeps the CUDA meaning
        namespace = {"__name__": "torch.utils.checkpoint_fake"}
        with torch.autocast("cuda"):
            exec("import torch\nresult = torch.is_autocast_enabled()", namespace)
        assert namespace["result"] is False


@case("torch.amp.GradScaler")
def grad_scaler_device():
    for scaler in (torch.amp.GradScaler("cuda"), torch.amp.GradScaler(), torch.amp.GradScaler(device="cuda"),
                   torch.GradScaler("cuda") if hasattr(torch, "GradScaler") else torch.amp.GradScaler()):
        assert scaler._device == "npu" and scaler.is_enabled()
    assert torch.amp.GradScaler("cpu")._device == "cpu"
    _amp_step(torch.amp.GradScaler("cuda", init_scale=2.0**8), lambda: torch.autocast("cuda"))


def _amp_step(scaler, autocast):
    model = torch.nn.Linear(4, 1).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.weight.detach().cpu().clone()
    with autocast():
        loss = model(torch.ones(2, 4, device="cuda")).float().pow(2).mean()
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    assert not torch.equal(before, model.weight.detach().cpu()), "the scaled step did not update"


@case("torch.cuda.amp.autocast", "torch.cuda.amp.GradScaler", "torch.cuda.amp.custom_fwd",
      "torch.cuda.amp.custom_bwd", "torch.amp.custom_fwd", "torch.amp.custom_bwd")
def cuda_amp_namespace():
    layer = torch.nn.Linear(4, 4).cuda()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.cuda.amp.autocast():
            assert layer(torch.ones(1, 4, device="cuda")).dtype == torch.float16
        with torch.cuda.amp.autocast(dtype=torch.bfloat16):
            assert layer(torch.ones(1, 4, device="cuda")).dtype == torch.bfloat16
        with torch.cuda.amp.autocast(False):
            assert layer(torch.ones(1, 4, device="cuda")).dtype == torch.float32
        scaler = torch.cuda.amp.GradScaler(init_scale=2.0**10)
        assert isinstance(scaler, torch.amp.GradScaler) and scaler._device == "npu"
        assert scaler.get_scale() == 2.0**10
        _amp_step(torch.cuda.amp.GradScaler(init_scale=2.0**8), torch.cuda.amp.autocast)

        class Square(torch.autograd.Function):
            @staticmethod
            @torch.cuda.amp.custom_fwd(cast_inputs=torch.float32)
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * x

            @staticmethod
            @torch.cuda.amp.custom_bwd
            def backward(ctx, grad):
                (x,) = ctx.saved_tensors
                return 2 * x * grad

        class Cube(torch.autograd.Function):
            @staticmethod
            @torch.amp.custom_fwd(device_type="cuda")
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * x * x

            @staticmethod
            @torch.amp.custom_bwd(device_type="cuda")
            def backward(ctx, grad):
                (x,) = ctx.saved_tensors
                return 3 * x * x * grad

    x = torch.ones(2, device="cuda", requires_grad=True)
    with torch.autocast("cuda"):
        y = Square.apply(x.half())
    assert y.dtype == torch.float32, "custom_fwd(cast_inputs=float32) must run in fp32 under npu autocast"
    (Square.apply(x) + Cube.apply(x)).sum().backward()
    assert x.grad.cpu().tolist() == [5.0, 5.0]


# ------------------------------------------------------------------ torch.cuda namespace

def _cuda_call_cases():
    """torch.cuda.X called CUDA-style -> compare with torch.npu.X called NPU-style."""
    state = torch.npu.get_rng_state()
    x = torch.ones(1, device="npu")
    return {
        "torch.cuda.is_available": (lambda: torch.cuda.is_available(), lambda: torch.npu.is_available()),
        "torch.cuda.device_count": (lambda: torch.cuda.device_count(), lambda: torch.npu.device_count()),
        "torch.cuda.current_device": (lambda: torch.cuda.current_device(), lambda: torch.npu.current_device()),
        "torch.cuda.set_device": (lambda: torch.cuda.set_device("cuda:0"), lambda: torch.npu.set_device("npu:0")),
        "torch.cuda.synchronize": (lambda: torch.cuda.synchronize("cuda"), lambda: torch.npu.synchronize("npu")),
        "torch.cuda.empty_cache": (lambda: torch.cuda.empty_cache(), lambda: torch.npu.empty_cache()),
        "torch.cuda.get_device_name": (lambda: torch.cuda.get_device_name("cuda:0"),
                                       lambda: torch.npu.get_device_name("npu:0")),
        "torch.cuda.get_device_properties": (lambda: torch.cuda.get_device_properties(torch.device("cuda", 0)).name,
                                             lambda: torch.npu.get_device_properties(NPU0).name),
        "torch.cuda.get_rng_state": (lambda: torch.cuda.get_rng_state("cuda"), lambda: torch.npu.get_rng_state("npu")),
        "torch.cuda.set_rng_state": (lambda: torch.cuda.set_rng_state(state, "cuda"),
                                     lambda: torch.npu.set_rng_state(state, "npu")),
        "torch.cuda.get_rng_state_all": (lambda: len(torch.cuda.get_rng_state_all()),
                                         lambda: len(torch.npu.get_rng_state_all())),
        "torch.cuda.set_rng_state_all": (lambda: torch.cuda.set_rng_state_all(torch.npu.get_rng_state_all()),
                                         lambda: None),
        "torch.cuda.init": (lambda: torch.cuda.init(), lambda: torch.npu.init()),
        "torch.cuda.is_initialized": (lambda: torch.cuda.is_initialized(), lambda: torch.npu.is_initialized()),
        "torch.cuda.is_bf16_supported": (lambda: torch.cuda.is_bf16_supported(), lambda: torch.npu.is_bf16_supported()),
        "torch.cuda.manual_seed": (lambda: (torch.cuda.manual_seed(7), torch.npu.initial_seed())[1], lambda: 7),
        "torch.cuda.manual_seed_all": (lambda: (torch.cuda.manual_seed_all(8), torch.npu.initial_seed())[1], lambda: 8),
        "torch.cuda.initial_seed": (lambda: (torch.npu.manual_seed(9), torch.cuda.initial_seed())[1], lambda: 9),
        "torch.cuda.seed": (lambda: torch.cuda.seed(), lambda: None),
        "torch.cuda.seed_all": (lambda: torch.cuda.seed_all(), lambda: None),
        "torch.cuda._is_in_bad_fork": (lambda: torch.cuda._is_in_bad_fork(), lambda: torch.npu._is_in_bad_fork()),
        "torch.cuda.device": (lambda: _enter(torch.cuda.device("cuda:0")), lambda: _enter(torch.npu.device("npu:0"))),
        "torch.cuda.device_of": (lambda: _enter(torch.cuda.device_of(x)), lambda: _enter(torch.npu.device_of(x))),
        "torch.cuda.mem_get_info": (lambda: torch.cuda.mem_get_info("cuda:0"), lambda: torch.npu.mem_get_info("npu:0")),
        "torch.cuda.memory_summary": (lambda: torch.cuda.memory_summary("cuda"), lambda: torch.npu.memory_summary("npu")),
        "torch.cuda.memory_stats": (lambda: torch.cuda.memory_stats(torch.device("cuda")),
                                    lambda: torch.npu.memory_stats(torch.device("npu"))),
        "torch.cuda.random.current_device": (lambda: torch.cuda.random.current_device(),
                                             lambda: torch.npu.current_device()),
        "torch.cuda.random.device_count": (lambda: torch.cuda.random.device_count(), lambda: torch.npu.device_count()),
        "torch.cuda.random.is_initialized": (lambda: torch.cuda.random.is_initialized(),
                                             lambda: torch.npu.is_initialized()),
        "torch.cuda.memory.is_initialized": (lambda: torch.cuda.memory.is_initialized(),
                                             lambda: torch.npu.is_initialized()),
        "torch.cuda.memory.mem_get_info": (lambda: torch.cuda.memory.mem_get_info("cuda"),
                                           lambda: torch.npu.mem_get_info("npu")),
        # issue #15: each failed under auto mode (IndexError via default_generators, _cuda_* C hooks, NVML)
        "torch.cuda.random.manual_seed": (lambda: (torch.cuda.random.manual_seed(1), torch.npu.initial_seed())[1],
                                          lambda: 1),
        "torch.cuda.set_per_process_memory_fraction": (
            lambda: (torch.cuda.set_per_process_memory_fraction(0.5, "cuda:0"),
                     torch.npu.get_per_process_memory_fraction(0))[1], lambda: 0.5),
        "torch.cuda.memory_snapshot": (lambda: torch.cuda.memory_snapshot(), lambda: torch.npu.memory_snapshot()),
        "torch.cuda.memory_stats_as_nested_dict": (lambda: torch.cuda.memory_stats_as_nested_dict("cuda"),
                                                   lambda: torch.npu.memory_stats_as_nested_dict("npu")),
        "torch.cuda.reset_max_memory_cached": (lambda: torch.cuda.reset_max_memory_cached("cuda:0"),
                                               lambda: torch.npu.reset_max_memory_cached("npu:0")),
        "torch.cuda.utilization": (lambda: torch.cuda.utilization("cuda:0"), lambda: torch.npu.utilization(0)),
        "torch.cuda.memory._record_memory_history": (lambda: torch.cuda.memory._record_memory_history(),
                                                     lambda: None),
        "torch.cuda.memory._snapshot": (lambda: torch.cuda.memory._snapshot(), lambda: torch.npu.memory._snapshot()),
        "torch.cuda.caching_allocator_alloc": (
            lambda: torch.cuda.caching_allocator_delete(torch.cuda.caching_allocator_alloc(64, "cuda:0")),
            lambda: None),
    }


def _enter(context):
    with context:
        return torch.ones(1, device="cuda").device


MEMORY_QUERIES = ("memory_allocated", "max_memory_allocated", "memory_reserved", "max_memory_reserved",
                  "memory_cached", "max_memory_cached", "reset_peak_memory_stats", "reset_max_memory_allocated")


def _redirect_case(label, cuda_call, npu_call):
    def run():
        got, want = cuda_call(), npu_call()
        if isinstance(want, torch.Tensor):
            assert torch.equal(got, want), (got, want)
        elif want is not None:
            assert got == want, (got, want)
        function = torch.cuda
        for part in label.split(".")[2:]:
            function = getattr(function, part)
        assert getattr(function, "__wrapped__", None) is not None or isinstance(function, type), label

    run.__name__ = "cuda_" + label.replace("torch.cuda.", "").replace(".", "_")
    CASES[run.__name__] = (run, (label,))


for _label, (_cuda, _npu) in _cuda_call_cases().items():
    _redirect_case(_label, _cuda, _npu)
for _name in MEMORY_QUERIES:
    _redirect_case(f"torch.cuda.{_name}", lambda n=_name: getattr(torch.cuda, n)("cuda:0"),
                   lambda n=_name: getattr(torch.npu, n)("npu:0"))


@case()
def cuda_is_available_policy_per_caller():
    assert torch.cuda.is_available() is True and torch.cuda.device_count() == torch.npu.device_count()
    for module in ("torch.utils.data", "transformers.training_args", "accelerate.state", "torch_npu.utils"):
        namespace = {"__name__": module}
        exec("import torch\nresult = (torch.cuda.is_available(), torch.cuda.device_count())", namespace)
        assert namespace["result"] == (False, 0), (module, namespace["result"])
    namespace = {"__name__": "mytrainer.engine"}
    exec("import torch\nresult = torch.cuda.is_available()", namespace)
    assert namespace["result"] is True
    # the policy is configurable
    policy = sys.modules["transplant.auto._core"].STATE.policy
    saved = policy.config.cuda_available
    try:
        policy.config.cuda_available = "npu"
        namespace = {"__name__": "transformers.training_args"}
        exec("import torch\nresult = torch.cuda.is_available()", namespace)
        assert namespace["result"] is True
        policy.config.cuda_available = "cuda"
        assert torch.cuda.is_available() is False
    finally:
        policy.config.cuda_available = saved


@case()
def unsupported_names_warn_once_with_tip():
    classification = sys.modules["transplant.auto._core"].STATE.classification
    labels = [name for name, what in auto.patched_names().items() if what == "warns: unsupported"]
    assert "torch.cuda.get_arch_list" in labels and "torch.cuda.nvtx.range_push" in labels
    for label in labels:
        function = torch
        for part in label.split(".")[1:]:
            function = getattr(function, part)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            for _ in range(2):
                try:
                    function()
                except Exception:  # noqa: BLE001 - the original CUDA function may fail; the warning came first
                    pass
        ours = [w for w in caught if issubclass(w.category, auto.TransplantAutoWarning)]
        assert len(ours) == 1, (label, [str(w.message) for w in caught])
        assert "no NPU equivalent" in str(ours[0].message) and ours[0].filename == __file__
        owner = max((n for n in classification.unsupported if label == n or label.startswith(n + ".")), key=len)
        rule = classification.rule_ids[owner]
        assert rule.startswith("TP5"), (label, rule)
    COVERED_DYNAMICALLY.update(labels)


COVERED_DYNAMICALLY: set = set()


# ------------------------------------------------------------------ distributed (single process)

@case("torch.distributed.init_process_group", "torch.distributed.new_group", "torch.distributed.is_nccl_available",
      "torch.nn.parallel.DistributedDataParallel")
def distributed_single_rank():
    import torch.distributed as dist

    assert dist.is_nccl_available() is True
    namespace = {"__name__": "accelerate.state"}
    exec("import torch.distributed as dist\nresult = dist.is_nccl_available()", namespace)
    assert namespace["result"] is False
    with tempfile.TemporaryDirectory() as tmp:
        # a store path containing "nccl" and "cuda" must be used as written
        store = os.path.join(tmp, "nccl_cuda_store")
        dist.init_process_group("nccl", init_method=f"file://{store}", world_size=1, rank=0)
        try:
            assert dist.get_backend() == "hccl"
            assert os.path.exists(store), "init_method path was rewritten"
            assert not os.path.exists(os.path.join(tmp, "hccl_npu_store"))
            group = dist.new_group([0], None, "nccl")
            assert dist.get_backend(group) == "hccl"
            group2 = dist.new_group(ranks=[0], backend=dist.Backend.NCCL)
            assert dist.get_backend(group2) == "hccl"
            gloo = dist.new_group(ranks=[0], backend="gloo")
            assert dist.get_backend(gloo) == "gloo"
            tensor = torch.ones(2, device="cuda")
            dist.all_reduce(tensor)
            assert tensor.cpu().tolist() == [1.0, 1.0]
            for ids, output in (([0], None), ((0,), None), (["cuda:0"], "cuda:0"), ((torch.device("cuda", 0),), 0)):
                model = torch.nn.Linear(2, 1).cuda()
                ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=output)
                assert ddp.device_ids == [0] or list(ddp.device_ids) == [0], ddp.device_ids
                ddp(torch.ones(3, 2, device="cuda")).sum().backward()
                assert model.weight.grad.device == NPU0
        finally:
            dist.destroy_process_group()


@case()
def backend_strings_are_rewritten_token_wise():
    from transplant.auto._devices import npu_backend

    assert npu_backend("nccl") == "hccl"
    assert npu_backend("NCCL") == "hccl"
    assert npu_backend("cuda:nccl,cpu:gloo") == "npu:hccl,cpu:gloo"
    assert npu_backend("gloo") is None
    assert npu_backend("mynccl_plugin") is None
    assert npu_backend(None) is None


@case("torch.distributed.device_mesh.init_device_mesh", "torch.distributed.device_mesh.DeviceMesh")
def device_mesh_device_type():
    import torch.distributed as dist
    from torch.distributed import device_mesh

    seen = []
    real_handle = device_mesh._get_device_handle

    def spy(device_type="cuda"):
        seen.append(device_type)
        return real_handle(device_type)

    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group("nccl", init_method=f"file://{tmp}/store", world_size=1, rank=0)
        device_mesh._get_device_handle = spy
        try:
            for call in (lambda: device_mesh.init_device_mesh("cuda", (1,)), lambda: device_mesh.DeviceMesh("cuda", [0])):
                seen.clear()
                try:
                    mesh = call()
                except RuntimeError as error:  # the emulated hccl group has no name; the device type got there first
                    assert "ProcessGroup name not set" in str(error), error
                else:
                    assert mesh.device_type == "npu"
                assert seen and set(seen) == {"npu"}, seen
        finally:
            device_mesh._get_device_handle = real_handle
            dist.destroy_process_group()


@case("torch.distributed.fsdp.FullyShardedDataParallel")
def fsdp_is_patched_when_imported():
    # FSDP is expensive to import, so it is patched only once the program imports it
    from torch.distributed.fsdp import FullyShardedDataParallel

    assert "torch.distributed.fsdp.FullyShardedDataParallel" in auto.patched_names()
    assert getattr(FullyShardedDataParallel.__init__, "__wrapped__", None) is not None
    from transplant.auto._core import _bound
    from transplant.auto._devices import npu_device_or_index

    seen = {}

    def init(self, module, process_group=None, device_id=None):
        seen["device_id"] = device_id

    probe = _bound(init, "fsdp", {"device_id": (npu_device_or_index, "device")})
    probe(None, torch.nn.Linear(1, 1), device_id=0)
    assert seen["device_id"] == NPU0
    probe(None, torch.nn.Linear(1, 1), None, "cuda:0")
    assert seen["device_id"] == "npu:0"


@case("torch.distributed.pipelining.stage.PipelineStage", "torch.distributed.pipelining.stage.build_stage")
def pipelining_is_patched_when_imported():
    from torch.distributed.pipelining import stage

    assert "torch.distributed.pipelining.stage.PipelineStage" in auto.patched_names()
    assert "torch.distributed.pipelining.stage.build_stage" in auto.patched_names()
    assert getattr(stage.PipelineStage.__init__, "__wrapped__", None) is not None
    assert getattr(stage.build_stage, "__wrapped__", None) is not None


# ------------------------------------------------------------------ coverage against transfer_to_npu and torch

COVERAGE: dict = {}


def _pristine(name):
    """Resolve a dotted name against torch as it was before install()."""
    parts = name.split(".")
    if parts[0] != "torch" or len(parts) < 2:
        return None
    owner = {"torch": PRISTINE["torch"], "torch.cuda": PRISTINE["torch.cuda"]}.get(".".join(parts[:-1]))
    if owner is not None:
        return owner.get(parts[-1])
    obj = torch
    for part in parts[1:]:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


_ALIASES = {
    "torch.amp.autocast_mode.autocast": "torch.autocast",
    "torch.amp.grad_scaler.GradScaler": "torch.amp.GradScaler",
    "torch.distributed.fsdp.fully_sharded_data_parallel.FullyShardedDataParallel":
        "torch.distributed.fsdp.FullyShardedDataParallel",
    "torch.storage.TypedStorage.is_cuda": "torch.TypedStorage.is_cuda",
    "torch.cuda.amp.autocast_mode.autocast": "torch.cuda.amp.autocast",
    "torch.cuda.amp.autocast_mode.custom_fwd": "torch.cuda.amp.custom_fwd",
    "torch.cuda.amp.autocast_mode.custom_bwd": "torch.cuda.amp.custom_bwd",
    "torch.cuda.random.get_rng_state": "torch.cuda.get_rng_state",
    "torch.cuda.random.set_rng_state": "torch.cuda.set_rng_state",
}


@case()
def transfer_to_npu_coverage():
    """Every name Huawei's shim patches is patched here too, or deliberately not (with the reason)."""
    from transplant._paths import data_dir

    core = sys.modules["transplant.auto._core"]
    facts = json.loads((data_dir() / "transfer_to_npu.json").read_text())
    names = set(facts["device_wrapped_qualified"]) | set(facts["reassigned"]) | set(facts["distributed"])
    names |= set(facts["torch_cuda_redirected"]) | set(facts["proxy_types"]) | set(facts["bulk_copies"])
    names |= {f"{owner}.{name}" for owner, members in facts["device_wrapped"].items() for name in members}
    names |= {"warnings.filterwarnings"} & set(facts["module_level_calls"])
    names |= set(facts["deleted_entries"])
    patched = set(auto.patched_names())
    classification = core.STATE.classification
    third_party = {api for package in facts["third_party_config"].values() for api in package["apis"]}
    for name in sorted(names | third_party):
        plain = name[: -len(".__init__")] if name.endswith(".__init__") else name
        plain = _ALIASES.get(plain, plain)
        if plain in patched:
            status = "patched"
        elif name in core.DIFFERENCES_FROM_TRANSFER_TO_NPU:
            status = "deliberately not: " + core.DIFFERENCES_FROM_TRANSFER_TO_NPU[name]
        elif name in third_party:
            status = "deliberately not: " + core.DIFFERENCES_FROM_TRANSFER_TO_NPU["third-party"]
        elif any(plain == key or plain.startswith(key + ".") for key in classification.unsupported):
            status = "unsupported per the rules (warned at the call site where callable)"
        elif any(plain == key or plain.startswith(key + ".") for key in classification.renames):
            status = "renamed per the rules; target absent from this torch_npu (the emulator)"
        elif name.startswith("torch.cuda.") and _pristine(name) is None:
            status = "NPU-only name copied onto torch.cuda by transfer_to_npu; CUDA code never uses it"
        else:
            status = "MISSING"
        COVERAGE[name] = status


@case()
def factory_list_matches_torch_schemas():
    core = sys.modules["transplant.auto._core"]
    with_device = set()
    for schema in torch._C._jit_get_all_schemas():
        if schema.name.startswith("aten::") and any(a.name == "device" for a in schema.arguments):
            name = schema.name[len("aten::"):]
            if name in PRISTINE["torch"]:
                with_device.add(name)
    missing = with_device - set(core.FACTORIES) - set(core.FACTORIES_SKIPPED)
    assert not missing, f"torch functions with a device argument that auto mode does not wrap: {sorted(missing)}"


# ------------------------------------------------------------------ profiler

@case("torch.profiler.profile")
def profiler_activities():
    activity = torch.profiler.ProfilerActivity
    with torch.profiler.profile(activities=[activity.CPU, activity.CUDA]) as prof:
        torch.ones(2, device="cuda").sum()
    assert activity.CUDA not in prof.activities
    assert activity.CPU in prof.activities
    assert len(prof.key_averages()) > 0


# ------------------------------------------------------------------ issue #17 items 6-8

@case("torch.nn.parameter.UninitializedTensorMixin._allowed_methods")
def lazy_modules_move_and_materialise_on_the_npu():
    assert torch.nn.LazyLinear(4).to("cpu")(torch.ones(2, 3)).device.type == "cpu"
    for move in (lambda m: m.to("cuda"), lambda m: m.cuda(), lambda m: m.to(0), lambda m: m.npu()):
        module = move(torch.nn.LazyLinear(4))
        out = module(torch.ones(2, 3, device="cuda"))
        assert out.device == NPU0 and module.weight.device == NPU0 and module.weight.shape == (4, 3)
        out.sum().backward()
        assert module.weight.grad.device == NPU0


@case("torch.Generator")
def generator_reports_its_npu_device():
    assert torch.Generator("cuda").device == NPU0
    assert torch.Generator("npu").device == NPU0
    assert torch.Generator().device == torch.device("cpu")
    assert isinstance(torch.default_generator, torch.Generator)
    generator = torch.Generator("cuda").manual_seed(5)
    first = torch.rand(3, device="cuda", generator=generator)
    assert torch.equal(first, torch.rand(3, device="cuda", generator=torch.Generator("cuda").manual_seed(5)))


@case("torch.autograd.profiler_util.Kernel")
def profiler_kernel_device():
    kernel = torch.autograd.profiler_util.Kernel("x", "cuda", 11)
    assert kernel.device == "npu" and kernel.name == "x" and kernel.duration == 11
    assert torch.autograd.profiler_util.Kernel("y", "cpu", 1).device == "cpu"
    assert isinstance(kernel, tuple)


# ------------------------------------------------------------------ the rest of the emulated torch.npu surface

def _surface_redirects() -> list:
    """torch.cuda names redirected to a torch.npu name that no case above exercises by hand: the
    emulated surface (transplant/emulate/surface.py) gives every such target an emulation or a stub."""
    covered = {label for _, covers in CASES.values() for label in covers}
    return sorted(label for label, what in auto.patched_names().items()
                  if what.startswith("-> torch.npu") and label not in covered and "@" not in label)


def _resolve_now(dotted: str):
    obj = torch
    for part in dotted.split(".")[1:]:
        obj = getattr(obj, part)
    return obj


@case(*_surface_redirects())
def cuda_names_reach_the_emulated_npu_surface():
    from transplant.emulate.surface import NotEmulatedError

    for label in _surface_redirects():
        target_name = auto.patched_names()[label].removeprefix("-> ")
        target = _resolve_now(target_name)
        patched = _resolve_now(label)
        if getattr(target, "__doc__", "") and "not emulated:" in (target.__doc__ or ""):
            try:
                patched()
            except NotEmulatedError as error:
                assert f"not emulated: {target_name}" in str(error), (label, error)
            else:
                raise AssertionError(f"{label}: the stub for {target_name} did not raise")
        else:
            assert (patched is target or getattr(patched, "__wrapped__", None) is target
                    or getattr(patched, "__transplant_target__", None) is target
                    or isinstance(patched, type) and issubclass(patched, target)), (label, patched, target)


# ------------------------------------------------------------------ runner

def main(result_path: str) -> int:
    results = {}
    for name, (function, covers) in CASES.items():
        try:
            function()
            results[name] = {"ok": True, "covers": list(covers)}
        except BaseException:  # noqa: BLE001 - every failure is reported to pytest with its traceback
            results[name] = {"ok": False, "covers": list(covers), "error": traceback.format_exc()}
    payload = {
        "cases": results,
        "patched": auto.patched_names(),
        "covered_dynamically": sorted(COVERED_DYNAMICALLY),
        "transfer_to_npu": COVERAGE,
        "not_patched": sorted(sys.modules["transplant.auto._core"].NOT_PATCHED),
        "skipped_targets": sorted(
            s for s, t in sys.modules["transplant.auto._core"].STATE.classification.renames.items()
            if s not in auto.patched_names()
        ),
    }
    with open(result_path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=1)
    return 0


if __name__ == "__main__":
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(sys.argv[1])
    sys.exit(code)
