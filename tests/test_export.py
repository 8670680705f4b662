"""python -m dnnsep.bin.export: TorchScript and ONNX files that reproduce the PyTorch model's
outputs within 1e-4 on new batch sizes and lengths, checked before anything is written."""

import importlib.util

import numpy as np
import pytest
import torch

from dnnsep import DnnsepError, DPRNNConfig, DPRNNTasNet
from dnnsep.bin import export

TINY = dict(n_filters=16, kernel_size=4, hidden=16, chunk_size=10, hop_size=5, n_blocks=1)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = DPRNNTasNet(DPRNNConfig(**TINY)).eval()
    path = tmp_path_factory.mktemp("model") / "best.pth"
    model.save(path)
    return model, path


def fresh_input(seed, batch, time):
    return 0.1 * torch.randn(batch, time, generator=torch.Generator().manual_seed(seed))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_round_trip(saved, tmp_path, capsys):
    model, path = saved
    assert export.main(["--format", "torchscript", "--model", str(path), "--output", str(tmp_path / "m.pt")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "m.pt")
    scripted = torch.jit.load(str(tmp_path / "m.pt"))
    for batch, time in [(1, 12345), (3, 777), (2, 5)]:  # none of these was traced
        x = fresh_input(batch + time, batch, time)
        with torch.no_grad():
            expected = model(x).numpy()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a traced LSTM on two threads of a busy machine crawls
        try:
            with torch.no_grad():
                got = scripted(x).numpy()
        finally:
            torch.set_num_threads(threads)
        np.testing.assert_allclose(got, expected, atol=1e-4)
    # default output: beside the model
    assert export.main(["--format", "torchscript", "--model", str(path)]) == 0
    assert (path.parent / "best.torchscript.pt").is_file()


def test_nothing_is_written_when_the_check_fails(saved, tmp_path, monkeypatch):
    _, path = saved
    monkeypatch.setattr(export, "run_torchscript", lambda file, x: np.zeros((x.shape[0], 2, x.shape[1])) + 1e-3)
    with pytest.raises(DnnsepError, match=r"differs from PyTorch by .* > 0\.0001; nothing written"):
        export.main(["--format", "torchscript", "--model", str(path), "--output", str(tmp_path / "m.pt")])
    assert list(tmp_path.iterdir()) == []  # no file, no temporary


def test_onnx_needs_its_extras(saved, tmp_path, monkeypatch):
    _, path = saved
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    with pytest.raises(DnnsepError, match=r"ONNX export needs .*onnxscript.*: pip install 'dnnsep\[export\]'"):
        export.main(["--format", "onnx", "--model", str(path), "--output", str(tmp_path / "m.onnx")])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_onnx_round_trip_with_onnxruntime(saved, tmp_path):
    import onnxruntime  # the [export] extra (conftest names it up front if missing)

    model, path = saved
    out = tmp_path / "m.onnx"
    assert export.main(["--format", "onnx", "--model", str(path), "--output", str(out)]) == 0
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["mixture"]
    for batch, time in [(1, 12345), (3, 777), (2, 5)]:  # dynamic batch and time axes
        x = fresh_input(batch + time, batch, time)
        (got,) = session.run(None, {"mixture": x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4)
