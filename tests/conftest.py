import warnings

import pytest
import torch

warnings.filterwarnings("ignore", category=FutureWarning)  # norse's torch.jit deprecation notice
torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def kernel_mode_restored():
    """A command run in-process applies --compile to the process's kernel choice; the next
    test starts from the choice the process began with."""
    from models import native

    mode = native.KERNEL.mode
    yield
    native.KERNEL.set_mode(mode)


@pytest.fixture
def tiny_cfg():
    from models.model_config import ModelConfig

    return ModelConfig(input_dim=40, num_classes=20, hidden=(24, 24), dropout=0.1)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """An Adam and an IVON checkpoint trained briefly on a slice of the built-in corpus."""
    from robustness.train_options import TrainRequest
    from robustness.training import train_to_checkpoint

    d = tmp_path_factory.mktemp("ck")
    out = {}
    for opt, epochs, n in (("adam", 5, 800), ("ivon", 2, 400)):
        p = d / f"{opt}.pt"
        train_to_checkpoint(TrainRequest(optimizer=opt, epochs=epochs, hidden=(32, 32), limit_train=n, seed=1),
                            p, progress=False)
        out[opt] = p
    return out
