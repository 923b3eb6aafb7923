import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test, excluded from the default run")


@pytest.fixture(scope="session")
def toy():
    from cases import get_case

    case = get_case("toy")
    return case, case.load_model(), case.dataset(32, seed=0)
