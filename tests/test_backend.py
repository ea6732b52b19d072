import numpy as np
import pytest

from minircnn.backend import asnumpy, get_array_module, gpu_available, to_device


def test_numpy_arrays_dispatch_to_numpy():
    x = np.ones(3)
    assert get_array_module(x) is np
    assert get_array_module(x, None, 2.0) is np
    assert asnumpy(x) is x


def test_to_device_cpu_and_bad_device():
    x = np.arange(4.0)
    np.testing.assert_array_equal(to_device(x, "cpu"), x)
    with pytest.raises(ValueError, match="device must be 'cpu' or 'gpu'"):
        to_device(x, "tpu")


def test_gpu_request_without_gpu_is_a_clear_error():
    if gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="needs CuPy"):
        to_device(np.ones(2), "gpu")


@pytest.mark.gpu
def test_round_trip_through_gpu():
    x = np.arange(6.0).reshape(2, 3)
    g = to_device(x, "gpu")
    assert get_array_module(g) is not np
    np.testing.assert_array_equal(asnumpy(g), x)
