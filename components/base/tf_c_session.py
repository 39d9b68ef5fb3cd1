"""A SavedModel loaded and run through TensorFlow's C API, without holding Python's lock.

Why: the predictor loads bots while it answers others in the same process. TensorFlow's
Python loader imports the graph in one call that keeps Python's lock (GIL) for 20-40 ms per
version of botyard's model, and every request that arrives meanwhile waits that long: with a
load or two a second, that was the loaded bots' p99 latency. Through ``ctypes`` the C API
(``TF_LoadSessionFromSavedModel``: import, restore, init op; ``TF_SessionRun``) runs with the
lock released, so Python requests keep running while a version loads.

The library is the one TensorFlow's Python package has already loaded (``libtensorflow_cc``):
the same kernels, the same process-wide state. Only the calls below are used; string inputs are
``TF_TString`` elements written with ``TF_StringCopy`` and released with ``TF_StringDealloc``
(a tensor allocated by ``TF_AllocateTensor`` frees its buffer, not its strings' heap).
"""

from __future__ import annotations

import ctypes
import os
import threading

import numpy as np

TF_STRING = 7
TSTRING_SIZE = 24  # sizeof(TF_TString)
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 6: np.int8, 9: np.int64, 10: np.bool_}

_lib = None
_lib_lock = threading.Lock()


class TFError(RuntimeError):
    """A TensorFlow C API call failed; the message is TensorFlow's."""


class _Output(ctypes.Structure):
    _fields_ = [("oper", ctypes.c_void_p), ("index", ctypes.c_int)]


def _signatures(lib) -> None:
    p, i, sz, i64 = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t, ctypes.c_int64
    table = {
        "TF_NewStatus": ([], p), "TF_DeleteStatus": ([p], None), "TF_GetCode": ([p], i),
        "TF_Message": ([p], ctypes.c_char_p),
        "TF_NewSessionOptions": ([], p), "TF_DeleteSessionOptions": ([p], None),
        "TF_SetConfig": ([p, ctypes.c_char_p, sz, p], None),
        "TF_NewGraph": ([], p), "TF_DeleteGraph": ([p], None),
        "TF_LoadSessionFromSavedModel": ([p, p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), i, p, p, p], p),
        "TF_GraphOperationByName": ([p, ctypes.c_char_p], p),
        "TF_SessionRun": ([p, p, ctypes.POINTER(_Output), ctypes.POINTER(p), i, ctypes.POINTER(_Output),
                           ctypes.POINTER(p), i, ctypes.POINTER(p), i, p, p], None),
        "TF_CloseSession": ([p, p], None), "TF_DeleteSession": ([p, p], None),
        "TF_AllocateTensor": ([i, ctypes.POINTER(i64), i, sz], p), "TF_DeleteTensor": ([p], None),
        "TF_TensorData": ([p], p), "TF_TensorByteSize": ([p], sz), "TF_NumDims": ([p], i),
        "TF_Dim": ([p, i], i64), "TF_TensorType": ([p], i),
        "TF_StringInit": ([p], None), "TF_StringCopy": ([p, ctypes.c_char_p, sz], None), "TF_StringDealloc": ([p], None),
    }  # fmt: skip
    for name, (args, result) in table.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, result


def library():
    """TensorFlow's C library, as TensorFlow's Python package loaded it (once)."""
    global _lib
    with _lib_lock:
        if _lib is None:
            import tensorflow as tf

            lib = ctypes.CDLL(os.path.join(os.path.dirname(tf.__file__), "libtensorflow_cc.so.2"))
            _signatures(lib)
            _lib = lib
        return _lib


class _Status:
    def __init__(self, lib):
        self.lib, self.ptr = lib, lib.TF_NewStatus()

    def check(self, what: str) -> None:
        if self.lib.TF_GetCode(self.ptr) != 0:
            raise TFError(f"{what}: {self.lib.TF_Message(self.ptr).decode('utf-8', 'replace')}")

    def __del__(self):
        self.lib.TF_DeleteStatus(self.ptr)


class CSession:
    """One SavedModel's session: ``run(feed_tensor, feed_strings, fetch_tensors, targets)``.

    ``export_dir`` holds ``saved_model.pb`` (tag ``serve``) and ``variables/``; ``config`` is a
    serialized ``ConfigProto``. Concurrent ``run`` calls are safe (TensorFlow's sessions are).
    """

    def __init__(self, export_dir: str, config: bytes, tags: tuple[str, ...] = ("serve",)):
        lib = self.lib = library()
        self._graph, self._session = lib.TF_NewGraph(), None
        options = lib.TF_NewSessionOptions()
        try:
            status = _Status(lib)
            lib.TF_SetConfig(options, config, len(config), status.ptr)
            status.check("session config")
            names = (ctypes.c_char_p * len(tags))(*(t.encode() for t in tags))
            session = lib.TF_LoadSessionFromSavedModel(
                options, None, export_dir.encode(), names, len(tags), self._graph, None, status.ptr
            )
            status.check(f"loading {export_dir}")
            self._session = session
        finally:
            lib.TF_DeleteSessionOptions(options)

    def _operation(self, name: str):
        op = self.lib.TF_GraphOperationByName(self._graph, name.encode())
        if not op:
            raise TFError(f"the graph has no operation '{name}'")
        return op

    def outputs(self, names: list[str]) -> list[_Output]:
        """Resolved fetch / feed handles for tensor names such as ``"StatefulPartitionedCall_1:0"``."""
        resolved = []
        for name in names:
            op_name, _, index = name.partition(":")
            resolved.append(_Output(self._operation(op_name), int(index or 0)))
        return resolved

    def operations(self, names: list[str]) -> list:
        """Resolved target handles for operation names."""
        return [self._operation(n) for n in names]

    def run(self, feed=None, strings: list[str] | None = None, fetches=(), targets=()) -> list[np.ndarray]:
        """Run with ``strings`` (a 1-D ``tf.string`` tensor) fed to ``feed``; returns ``fetches``' values."""
        lib = self.lib
        status = _Status(lib)
        inputs, values, data = [], [], None
        if feed is not None:
            encoded = [s.encode("utf-8") for s in strings]
            dims = (ctypes.c_int64 * 1)(len(encoded))
            tensor = lib.TF_AllocateTensor(TF_STRING, dims, 1, TSTRING_SIZE * max(1, len(encoded)))
            data = lib.TF_TensorData(tensor)
            for k, value in enumerate(encoded):
                element = data + k * TSTRING_SIZE
                lib.TF_StringInit(element)
                lib.TF_StringCopy(element, value, len(value))
            inputs, values = [feed], [tensor]
        n_out = len(fetches)
        results = (ctypes.c_void_p * max(1, n_out))()
        try:
            lib.TF_SessionRun(
                self._session, None,
                (_Output * max(1, len(inputs)))(*inputs), (ctypes.c_void_p * max(1, len(values)))(*values), len(inputs),
                (_Output * max(1, n_out))(*fetches), results, n_out,
                (ctypes.c_void_p * max(1, len(targets)))(*targets), len(targets), None, status.ptr,
            )  # fmt: skip
            status.check("running the model")
            return [self._array(results[k]) for k in range(n_out)]
        finally:
            for k in range(n_out):
                if results[k]:
                    lib.TF_DeleteTensor(results[k])
            if values:
                for k in range(len(strings)):
                    lib.TF_StringDealloc(data + k * TSTRING_SIZE)
                lib.TF_DeleteTensor(values[0])

    def _array(self, tensor) -> np.ndarray:
        lib = self.lib
        dtype = _DTYPES.get(lib.TF_TensorType(tensor))
        if dtype is None:
            raise TFError(f"output of TensorFlow type {lib.TF_TensorType(tensor)} is not supported here")
        shape = tuple(lib.TF_Dim(tensor, d) for d in range(lib.TF_NumDims(tensor)))
        array = np.empty(shape, dtype=dtype)
        ctypes.memmove(array.ctypes.data, lib.TF_TensorData(tensor), min(array.nbytes, lib.TF_TensorByteSize(tensor)))
        return array

    def close(self) -> None:
        lib, session, self._session = self.lib, self._session, None
        if session:
            status = _Status(lib)
            lib.TF_CloseSession(session, status.ptr)
            lib.TF_DeleteSession(session, status.ptr)
        graph, self._graph = self._graph, None
        if graph:
            lib.TF_DeleteGraph(graph)

    def __del__(self):
        if getattr(self, "lib", None) is not None:
            self.close()
