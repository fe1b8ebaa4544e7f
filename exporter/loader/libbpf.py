"""ctypes bindings to libbpf.so.1: the only module in pktpath that touches libbpf.

Everything above this module speaks Python objects (BpfObject, Program, Map, Btf,
RingBuffer); everything below is libbpf's C API as shipped by Debian/Ubuntu's
`libbpf1` package (1.1+).  libbpf 1.x returns NULL/negative errno and sets errno,
which every wrapper here turns into a LibbpfError carrying the errno and the
last lines libbpf logged, so callers never see a raw ctypes failure.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from exporter.errors import KernelError

# BTF kinds (include/uapi/linux/btf.h); stable ABI.
BTF_KIND_INT = 1
BTF_KIND_STRUCT = 4
BTF_KIND_UNION = 5
BTF_KIND_ENUM = 6
BTF_KIND_TYPEDEF = 8
BTF_KIND_PTR = 2
BTF_KIND_FUNC = 12
BTF_KIND_VAR = 14
BTF_KIND_DATASEC = 15
BTF_KIND_ENUM64 = 19
# Modifiers a pointer's target may hide behind.
_BTF_KIND_VOLATILE, _BTF_KIND_CONST, _BTF_KIND_RESTRICT, _BTF_KIND_TYPE_TAG = 9, 10, 11, 18
_BTF_MODIFIERS = frozenset(
    (BTF_KIND_TYPEDEF, _BTF_KIND_VOLATILE, _BTF_KIND_CONST, _BTF_KIND_RESTRICT, _BTF_KIND_TYPE_TAG)
)

# A call to a helper function: BPF_JMP | BPF_CALL with src_reg 0 (1 is a subprogram, 2 a kfunc).
_BPF_CALL = 0x85

# enum bpf_map_type values we create or read (include/uapi/linux/bpf.h).
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
PERCPU_MAP_TYPES = frozenset({BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_LRU_PERCPU_HASH})

_LIBBPF_SONAME = "libbpf.so.1"
_LIBBPF_INFO = 1  # enum libbpf_print_level: WARN=0, INFO=1, DEBUG=2


class LibbpfError(KernelError):
    """A libbpf call failed; carries errno and libbpf's own log lines."""

    def __init__(self, what: str, err: int, log: list[str] | None = None) -> None:
        self.errno = abs(err)
        self.log = log or []
        detail = os.strerror(self.errno) if self.errno else "failed"
        super().__init__(f"{what}: {detail}")


class _BtfType(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("info", ctypes.c_uint32), ("size_or_type", ctypes.c_uint32)]


class _BtfEnum(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("val", ctypes.c_int32)]


class _BtfEnum64(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("val_lo32", ctypes.c_uint32), ("val_hi32", ctypes.c_uint32)]


class _BtfMember(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("type", ctypes.c_uint32), ("offset", ctypes.c_uint32)]


class _KprobeMultiOpts(ctypes.Structure):
    # struct bpf_kprobe_multi_opts { size_t sz; const char **syms; const unsigned long *addrs;
    #                                const __u64 *cookies; size_t cnt; bool retprobe; size_t :0; }
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("syms", ctypes.POINTER(ctypes.c_char_p)),
        ("addrs", ctypes.c_void_p),
        ("cookies", ctypes.c_void_p),
        ("cnt", ctypes.c_size_t),
        ("retprobe", ctypes.c_bool),
    ]


class _BtfParam(ctypes.Structure):
    _fields_ = [("name_off", ctypes.c_uint32), ("type", ctypes.c_uint32)]


class _BtfVarSecinfo(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32), ("offset", ctypes.c_uint32), ("size", ctypes.c_uint32)]


class _BpfInsn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("regs", ctypes.c_uint8), ("off", ctypes.c_int16), ("imm", ctypes.c_int32)]


class _MapBatchOpts(ctypes.Structure):
    # struct bpf_map_batch_opts { size_t sz; __u64 elem_flags; __u64 flags; }
    _fields_ = [("sz", ctypes.c_size_t), ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
RING_SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)

_P = ctypes.c_void_p
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "libbpf_set_print": (_P, [_PRINT_FN]),
    "libbpf_version_string": (ctypes.c_char_p, []),
    "libbpf_num_possible_cpus": (ctypes.c_int, []),
    "bpf_object__open_file": (_P, [ctypes.c_char_p, _P]),
    "bpf_object__load": (ctypes.c_int, [_P]),
    "bpf_object__close": (None, [_P]),
    "bpf_object__btf": (_P, [_P]),
    "bpf_object__next_program": (_P, [_P, _P]),
    "bpf_object__find_map_by_name": (_P, [_P, ctypes.c_char_p]),
    "bpf_object__next_map": (_P, [_P, _P]),
    "bpf_map__name": (ctypes.c_char_p, [_P]),
    "bpf_map__reuse_fd": (ctypes.c_int, [_P, ctypes.c_int]),
    "bpf_program__name": (ctypes.c_char_p, [_P]),
    "bpf_program__section_name": (ctypes.c_char_p, [_P]),
    "bpf_program__set_autoload": (ctypes.c_int, [_P, ctypes.c_bool]),
    "bpf_program__autoload": (ctypes.c_bool, [_P]),
    "bpf_program__fd": (ctypes.c_int, [_P]),
    "bpf_program__attach": (_P, [_P]),
    "bpf_program__attach_kprobe_multi_opts": (_P, [_P, ctypes.c_char_p, _P]),
    "bpf_program__insns": (_P, [_P]),
    "bpf_program__insn_cnt": (ctypes.c_size_t, [_P]),
    "bpf_map__initial_value": (_P, [_P, ctypes.POINTER(ctypes.c_size_t)]),
    "bpf_link__destroy": (ctypes.c_int, [_P]),
    "bpf_map__fd": (ctypes.c_int, [_P]),
    "bpf_map__type": (ctypes.c_int, [_P]),
    "bpf_map__key_size": (ctypes.c_uint32, [_P]),
    "bpf_map__value_size": (ctypes.c_uint32, [_P]),
    "bpf_map__max_entries": (ctypes.c_uint32, [_P]),
    "bpf_map__set_max_entries": (ctypes.c_int, [_P, ctypes.c_uint32]),
    "bpf_map_lookup_elem": (ctypes.c_int, [ctypes.c_int, _P, _P]),
    "bpf_map_update_elem": (ctypes.c_int, [ctypes.c_int, _P, _P, ctypes.c_uint64]),
    "bpf_map_get_next_key": (ctypes.c_int, [ctypes.c_int, _P, _P]),
    "bpf_map_delete_elem": (ctypes.c_int, [ctypes.c_int, _P]),
    "bpf_map_lookup_batch": (ctypes.c_int, [ctypes.c_int, _P, _P, _P, _P, _P, _P]),
    "btf__parse": (_P, [ctypes.c_char_p, _P]),
    "btf__parse_split": (_P, [ctypes.c_char_p, _P]),
    "btf__free": (None, [_P]),
    "btf__type_cnt": (ctypes.c_uint32, [_P]),
    "btf__type_by_id": (_P, [_P, ctypes.c_uint32]),
    "btf__name_by_offset": (ctypes.c_char_p, [_P, ctypes.c_uint32]),
    "btf__find_by_name_kind": (ctypes.c_int32, [_P, ctypes.c_char_p, ctypes.c_uint32]),
    "ring_buffer__new": (_P, [ctypes.c_int, RING_SAMPLE_FN, _P, _P]),
    "ring_buffer__poll": (ctypes.c_int, [_P, ctypes.c_int]),
    "ring_buffer__free": (None, [_P]),
}


class _Libbpf:
    """The loaded shared library plus a bounded buffer of its log lines."""

    def __init__(self) -> None:
        try:
            # Ask for the 1.x ABI by soname; find_library may return the dev
            # symlink or nothing on minimal images.
            self.lib = ctypes.CDLL(_LIBBPF_SONAME, use_errno=True)
        except OSError as exc:
            from ctypes.util import find_library  # imports subprocess (~4 ms): only for this message

            path = find_library("bpf")
            raise KernelError(
                f"cannot load {_LIBBPF_SONAME} ({exc}); install it: apt-get install libbpf1"
                + (f" (found {path}, which is not the 1.x ABI)" if path else "")
            ) from None
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(self.lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
        # libbpf logs through one process-wide callback; keep the recent lines
        # so an error can say what the verifier or loader objected to.
        self.log: deque[str] = deque(maxlen=400)
        self._log_lock = threading.Lock()
        self._print_cb = _PRINT_FN(self._on_print)  # referenced to keep it alive
        self.lib.libbpf_set_print(self._print_cb)

    def _on_print(self, level: int, fmt: bytes, args: int) -> int:
        if level > _LIBBPF_INFO:
            return 0  # DEBUG is thousands of CO-RE lines per load: not worth formatting
        # A verifier log arrives as one WARN message, and its last line says why: a buffer that
        # cut it would keep the walk and lose the verdict.  Such messages are rare; INFO is short.
        buf = ctypes.create_string_buffer(1 << 20 if level == 0 else 4096)
        # On x86_64 and arm64 a va_list argument is passed as a pointer, so
        # handing libbpf's va_list straight to vsnprintf is well defined.
        self._libc.vsnprintf(buf, len(buf), fmt, args)
        text = buf.value.decode(errors="replace")
        with self._log_lock:
            for line in text.splitlines():
                if line.strip():
                    self.log.append(line.rstrip())
        return 0

    def take_log(self) -> list[str]:
        """Lines libbpf logged since the last call, oldest first."""
        with self._log_lock:
            lines = list(self.log)
            self.log.clear()
        return lines


_lib_instance: _Libbpf | None = None
_lib_lock = threading.Lock()


def lib() -> _Libbpf:
    global _lib_instance
    with _lib_lock:
        if _lib_instance is None:
            _lib_instance = _Libbpf()
        return _lib_instance


def _errno_or(default: int = errno.EINVAL) -> int:
    return ctypes.get_errno() or default


def version() -> str:
    raw = lib().lib.libbpf_version_string()
    return raw.decode() if raw else "unknown"


def num_possible_cpus() -> int:
    n = lib().lib.libbpf_num_possible_cpus()
    if n <= 0:
        raise LibbpfError("libbpf_num_possible_cpus", n)
    return int(n)


# --------------------------------------------------------------------------- BTF


class Btf:
    """Read-only view of one BTF blob (the kernel's, a module's, or an object's)."""

    def __init__(self, handle: int, owned: bool, keepalive: Btf | None = None) -> None:
        self._h = handle
        self._owned = owned
        self._base = keepalive  # split BTF references its base: keep it alive

    @classmethod
    def parse(cls, path: str, base: Btf | None = None) -> Btf:
        L = lib().lib
        ctypes.set_errno(0)
        h = L.btf__parse_split(path.encode(), base._h) if base else L.btf__parse(path.encode(), None)
        if not h:
            raise LibbpfError(f"cannot parse BTF {path}", _errno_or(errno.ENOENT))
        return cls(h, owned=True, keepalive=base)

    def close(self) -> None:
        if self._owned and self._h:
            lib().lib.btf__free(self._h)
        self._h = 0

    def __enter__(self) -> Btf:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _type(self, type_id: int) -> _BtfType:
        ptr = lib().lib.btf__type_by_id(self._h, type_id)
        if not ptr:
            raise LibbpfError(f"BTF type id {type_id}", errno.ENOENT)
        return _BtfType.from_address(ptr)

    def _name(self, off: int) -> str:
        raw = lib().lib.btf__name_by_offset(self._h, off)
        return raw.decode() if raw else ""

    def find(self, name: str, kind: int) -> int | None:
        tid = lib().lib.btf__find_by_name_kind(self._h, name.encode(), kind)
        return int(tid) if tid > 0 else None

    def type_count(self) -> int:
        return int(lib().lib.btf__type_cnt(self._h))

    @staticmethod
    def _kind(t: _BtfType) -> int:
        return int(t.info >> 24) & 0x1F

    @staticmethod
    def _vlen(t: _BtfType) -> int:
        return int(t.info) & 0xFFFF

    def enum_members(self, type_id: int) -> list[tuple[str, int]]:
        """(name, value) of every enumerator of ENUM/ENUM64 type `type_id`."""
        t = self._type(type_id)
        kind, vlen, signed = self._kind(t), self._vlen(t), bool(t.info >> 31)
        base = ctypes.addressof(t) + ctypes.sizeof(_BtfType)
        out: list[tuple[str, int]] = []
        if kind == BTF_KIND_ENUM:
            for i in range(vlen):
                e = _BtfEnum.from_address(base + i * ctypes.sizeof(_BtfEnum))
                val = e.val if signed else e.val & 0xFFFFFFFF
                out.append((self._name(e.name_off), val))
        elif kind == BTF_KIND_ENUM64:
            for i in range(vlen):
                e64 = _BtfEnum64.from_address(base + i * ctypes.sizeof(_BtfEnum64))
                out.append((self._name(e64.name_off), (e64.val_hi32 << 32) | e64.val_lo32))
        else:
            raise LibbpfError(f"BTF type {type_id} is not an enum", errno.EINVAL)
        return out

    def enum(self, name: str) -> list[tuple[str, int]] | None:
        """Enumerators of the named enum, or None when this BTF has no such enum."""
        for kind in (BTF_KIND_ENUM, BTF_KIND_ENUM64):
            tid = self.find(name, kind)
            if tid is not None:
                return self.enum_members(tid)
        return None

    def iter_enums(self, start_id: int = 1) -> Iterator[tuple[str, list[tuple[str, int]]]]:
        """Every named or anonymous enum from start_id on (module BTF: its own ids)."""
        for tid in range(start_id, self.type_count()):
            t = self._type(tid)
            if self._kind(t) in (BTF_KIND_ENUM, BTF_KIND_ENUM64):
                yield self._name(t.name_off), self.enum_members(tid)

    def struct_layout(self, name: str) -> tuple[int, list[tuple[str, int]]] | None:
        """(size, [(member, byte offset)]) of a struct, or None if absent."""
        tid = self.find(name, BTF_KIND_STRUCT)
        if tid is None:
            return None
        t = self._type(tid)
        base = ctypes.addressof(t) + ctypes.sizeof(_BtfType)
        members = []
        for i in range(self._vlen(t)):
            m = _BtfMember.from_address(base + i * ctypes.sizeof(_BtfMember))
            members.append((self._name(m.name_off), (m.offset & 0xFFFFFF) // 8))
        return int(t.size_or_type), members

    def func_return(self, name: str) -> tuple[int, str] | None:
        """(BTF kind, type name) of what function `name` returns, or None if it is not in BTF."""
        fid = self.find(name, BTF_KIND_FUNC)
        if fid is None:
            return None
        proto = self._type(self._type(fid).size_or_type)
        ret = proto.size_or_type
        if ret == 0:
            return (0, "void")
        t = self._type(ret)
        return (self._kind(t), self._name(t.name_off))

    def has_func(self, name: str) -> bool:
        return self.find(name, BTF_KIND_FUNC) is not None

    def _type_name(self, type_id: int) -> str:
        """A short C spelling of a type: "struct sk_buff *", "void *", "int" (modifiers dropped)."""
        stars = ""
        while type_id:
            t = self._type(type_id)
            kind = self._kind(t)
            if kind == BTF_KIND_PTR:
                stars += "*"
            elif kind not in _BTF_MODIFIERS or (kind == BTF_KIND_TYPEDEF and stars == ""):
                prefix = {BTF_KIND_STRUCT: "struct ", BTF_KIND_UNION: "union ", BTF_KIND_ENUM: "enum "}.get(kind, "")
                return f"{prefix}{self._name(t.name_off)}" + (f" {stars}" if stars else "")
            type_id = t.size_or_type
        return "void" + (f" {stars}" if stars else "")

    def func_params(self, name: str) -> list[tuple[str, str]] | None:
        """[(parameter name, type)] of function `name` ("struct sk_buff *" ...), None if not in BTF."""
        fid = self.find(name, BTF_KIND_FUNC)
        if fid is None:
            return None
        proto = self._type(self._type(fid).size_or_type)
        base = ctypes.addressof(proto) + ctypes.sizeof(_BtfType)
        out = []
        for i in range(self._vlen(proto)):
            p = _BtfParam.from_address(base + i * ctypes.sizeof(_BtfParam))
            out.append((self._name(p.name_off), self._type_name(p.type)))
        return out

    def datasec_var(self, section: str, var: str) -> tuple[int, int] | None:
        """(offset, size) of global variable `var` in data section `section` (".rodata")."""
        sid = self.find(section, BTF_KIND_DATASEC)
        if sid is None:
            return None
        sec = self._type(sid)
        base = ctypes.addressof(sec) + ctypes.sizeof(_BtfType)
        for i in range(self._vlen(sec)):
            info = _BtfVarSecinfo.from_address(base + i * ctypes.sizeof(_BtfVarSecinfo))
            if self._name(self._type(info.type).name_off) == var:
                return int(info.offset), int(info.size)
        return None

    def has_struct(self, name: str) -> bool:
        return self.find(name, BTF_KIND_STRUCT) is not None

    def has_typedef(self, name: str) -> bool:
        return self.find(name, BTF_KIND_TYPEDEF) is not None


# ------------------------------------------------------------------ maps


class Map:
    """A BPF map of a loaded object, read and written by raw bytes."""

    def __init__(self, handle: int, name: str) -> None:
        self._h = handle
        self.name = name

    @property
    def fd(self) -> int:
        return int(lib().lib.bpf_map__fd(self._h))

    @property
    def key_size(self) -> int:
        return int(lib().lib.bpf_map__key_size(self._h))

    @property
    def value_size(self) -> int:
        return int(lib().lib.bpf_map__value_size(self._h))

    @property
    def max_entries(self) -> int:
        return int(lib().lib.bpf_map__max_entries(self._h))

    @property
    def percpu(self) -> bool:
        return int(lib().lib.bpf_map__type(self._h)) in PERCPU_MAP_TYPES

    def reuse_fd(self, fd: int) -> None:
        """Before load: use an existing map (another object's) instead of creating one."""
        rc = lib().lib.bpf_map__reuse_fd(self._h, fd)
        if rc < 0:
            raise LibbpfError(f"map {self.name}: reuse fd", rc)

    def set_max_entries(self, n: int) -> None:
        rc = lib().lib.bpf_map__set_max_entries(self._h, n)
        if rc < 0:
            raise LibbpfError(f"map {self.name}: set max_entries {n}", rc)

    def _value_bytes(self) -> int:
        # Per-CPU values come back as one 8-byte-aligned slot per possible CPU.
        if self.percpu:
            return ((self.value_size + 7) // 8) * 8 * num_possible_cpus()
        return self.value_size

    def lookup(self, key: bytes) -> bytes | None:
        val = ctypes.create_string_buffer(self._value_bytes())
        kbuf = ctypes.create_string_buffer(key, len(key))
        rc = lib().lib.bpf_map_lookup_elem(self.fd, kbuf, val)
        if rc < 0:
            if abs(rc) == errno.ENOENT:
                return None
            raise LibbpfError(f"map {self.name}: lookup", rc)
        return val.raw

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        kbuf = ctypes.create_string_buffer(key, len(key))
        vbuf = ctypes.create_string_buffer(value, len(value))
        rc = lib().lib.bpf_map_update_elem(self.fd, kbuf, vbuf, flags)
        if rc < 0:
            raise LibbpfError(f"map {self.name}: update", rc)

    def delete(self, key: bytes) -> bool:
        """Remove a key; False if it was not there."""
        kbuf = ctypes.create_string_buffer(key, len(key))
        rc = lib().lib.bpf_map_delete_elem(self.fd, kbuf)
        if rc < 0:
            if abs(rc) == errno.ENOENT:
                return False
            raise LibbpfError(f"map {self.name}: delete", rc)
        return True

    def mmap(self) -> mmap.mmap:
        """The values of a BPF_F_MMAPABLE array, shared with the kernel: read and
        written without a syscall.  Entries are value_size apart (a multiple of 8)."""
        size = self.value_size * self.max_entries
        page = mmap.PAGESIZE
        try:
            return mmap.mmap(
                self.fd, (size + page - 1) // page * page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE
            )
        except OSError as exc:
            raise LibbpfError(f"map {self.name}: mmap", -(exc.errno or errno.EINVAL)) from exc

    def keys(self) -> list[bytes]:
        """Every key (get_next_key walk: works for LPM tries too, unlike batch lookup)."""
        L = lib().lib
        cur = None
        nxt = ctypes.create_string_buffer(self.key_size)
        out: list[bytes] = []
        while True:
            rc = L.bpf_map_get_next_key(self.fd, cur, nxt)
            if rc < 0:
                if abs(rc) == errno.ENOENT:
                    return out
                raise LibbpfError(f"map {self.name}: get next key", rc)
            out.append(nxt.raw)
            cur = ctypes.create_string_buffer(nxt.raw, self.key_size)

    def items(self) -> list[tuple[bytes, bytes]]:
        """Every (key, value) pair; one batch syscall per chunk where the kernel has it."""
        try:
            return self._items_batch()
        except LibbpfError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, 524):  # 524: ENOTSUPP
                raise
        return self._items_iter()

    def _items_batch(self) -> list[tuple[bytes, bytes]]:
        L = lib().lib
        ks, vs = self.key_size, self._value_bytes()
        chunk = max(1, min(self.max_entries, 1024))
        keys = ctypes.create_string_buffer(ks * chunk)
        vals = ctypes.create_string_buffer(vs * chunk)
        out_batch = ctypes.create_string_buffer(max(ks, 8))
        in_batch = ctypes.create_string_buffer(max(ks, 8))
        opts = _MapBatchOpts(sz=ctypes.sizeof(_MapBatchOpts))
        result: list[tuple[bytes, bytes]] = []
        first = True
        while True:
            count = ctypes.c_uint32(chunk)
            rc = L.bpf_map_lookup_batch(
                self.fd, None if first else in_batch, out_batch, keys, vals, ctypes.byref(count), ctypes.byref(opts)
            )
            err = abs(rc) if rc < 0 else 0
            if err and err != errno.ENOENT:
                raise LibbpfError(f"map {self.name}: lookup batch", rc)
            kraw, vraw = keys.raw, vals.raw
            for i in range(count.value):
                result.append((kraw[i * ks : (i + 1) * ks], vraw[i * vs : (i + 1) * vs]))
            if err == errno.ENOENT:  # no more elements
                return result
            ctypes.memmove(in_batch, out_batch, len(out_batch))
            first = False

    def _items_iter(self) -> list[tuple[bytes, bytes]]:
        L = lib().lib
        ks = self.key_size
        cur = None
        nxt = ctypes.create_string_buffer(ks)
        result: list[tuple[bytes, bytes]] = []
        while True:
            rc = L.bpf_map_get_next_key(self.fd, cur, nxt)
            if rc < 0:
                if abs(rc) == errno.ENOENT:
                    return result
                raise LibbpfError(f"map {self.name}: get next key", rc)
            key = nxt.raw
            val = self.lookup(key)
            if val is not None:  # deleted between the two calls
                result.append((key, val))
            cur = ctypes.create_string_buffer(key, ks)


def split_percpu(raw: bytes, value_size: int) -> list[bytes]:
    """Cut a per-CPU lookup result into one value per possible CPU."""
    stride = ((value_size + 7) // 8) * 8
    return [raw[i : i + value_size] for i in range(0, len(raw), stride)]


# -------------------------------------------------------------- programs


class Program:
    def __init__(self, handle: int) -> None:
        self._h = handle
        L = lib().lib
        self.name: str = L.bpf_program__name(handle).decode()
        self.section: str = L.bpf_program__section_name(handle).decode()

    def set_autoload(self, on: bool) -> None:
        rc = lib().lib.bpf_program__set_autoload(self._h, on)
        if rc < 0:
            raise LibbpfError(f"program {self.name}: set autoload", rc)

    @property
    def autoload(self) -> bool:
        return bool(lib().lib.bpf_program__autoload(self._h))

    @property
    def loaded(self) -> bool:
        return self.fd >= 0

    @property
    def fd(self) -> int:
        """The loaded program's descriptor, -1 before load.  /proc/self/fdinfo/<fd> shows its
        run_cnt and run_time_ns while kernel.bpf_stats_enabled is on (bench/hops.py reads them)."""
        return int(lib().lib.bpf_program__fd(self._h))

    def helper_calls(self) -> set[int]:
        """Ids of the BPF helper functions this program calls (enum bpf_func_id), before load."""
        L = lib().lib
        count = int(L.bpf_program__insn_cnt(self._h))
        ptr = L.bpf_program__insns(self._h)
        if not ptr or not count:
            return set()
        insns = (_BpfInsn * count).from_address(ptr)
        return {int(i.imm) for i in insns if i.code == _BPF_CALL and (i.regs >> 4) == 0}

    def attach(self) -> Link:
        L = lib().lib
        ctypes.set_errno(0)
        h = L.bpf_program__attach(self._h)
        if not h:
            raise LibbpfError(f"attach {self.section}", _errno_or())
        return Link(h)

    def attach_kprobe_multi(
        self,
        functions: list[str],
        cookies: list[int] | None = None,
        retprobe: bool = False,
        addresses: list[int] | None = None,
    ) -> Link:
        """One kprobe.multi link over every function (kernel 5.18+), each with its cookie
        (bpf_get_attach_cookie()) when given; `retprobe`: at their returns.  `addresses`: the
        functions' kallsyms addresses, passed instead of their names, so that the kernel need not
        look the names up (ftrace_lookup_symbols() walks every kernel symbol).  The sampling
        windows' function hooks (window_links.py), and bench/attach.py's reference."""
        L = lib().lib
        n = len(functions)
        if (cookies is not None and len(cookies) != n) or (addresses is not None and len(addresses) != n):
            raise ValueError("one cookie and one address per function")
        syms = (ctypes.c_char_p * n)(*(f.encode() for f in functions)) if addresses is None else None
        addr_array = (ctypes.c_ulong * n)(*addresses) if addresses is not None else None
        cookie_array = (ctypes.c_uint64 * n)(*cookies) if cookies is not None else None
        opts = _KprobeMultiOpts(
            sz=ctypes.sizeof(_KprobeMultiOpts),
            syms=syms,
            addrs=ctypes.cast(addr_array, ctypes.c_void_p) if addr_array is not None else None,
            cookies=ctypes.cast(cookie_array, ctypes.c_void_p) if cookie_array is not None else None,
            cnt=n,
            retprobe=retprobe,
        )
        ctypes.set_errno(0)
        h = L.bpf_program__attach_kprobe_multi_opts(self._h, None, ctypes.byref(opts))
        if not h:
            raise LibbpfError(f"attach {self.section} to {len(functions)} functions", _errno_or(), lib().take_log())
        return Link(h)


class Link:
    def __init__(self, handle: int) -> None:
        self._h = handle

    def destroy(self) -> None:
        if self._h:
            lib().lib.bpf_link__destroy(self._h)
            self._h = 0


class BpfObject:
    """An opened (then loaded) BPF ELF object."""

    def __init__(self, path: str) -> None:
        L = lib().lib
        self.path = path
        ctypes.set_errno(0)
        h = L.bpf_object__open_file(path.encode(), None)
        if not h:
            raise LibbpfError(f"open BPF object {path}", _errno_or(errno.ENOENT), lib().take_log())
        self._h = h
        self.programs: list[Program] = []
        p = L.bpf_object__next_program(h, None)
        while p:
            self.programs.append(Program(p))
            p = L.bpf_object__next_program(h, p)

    def load(self) -> None:
        lib().take_log()  # start the log at this load
        rc = lib().lib.bpf_object__load(self._h)
        if rc < 0:
            raise LibbpfError(f"load BPF object {os.path.basename(self.path)}", rc, lib().take_log())

    @property
    def maps(self) -> list[Map]:
        """Every map, internal ones (.rodata, .bss) included."""
        L = lib().lib
        out = []
        m = L.bpf_object__next_map(self._h, None)
        while m:
            out.append(Map(m, L.bpf_map__name(m).decode()))
            m = L.bpf_object__next_map(self._h, m)
        return out

    def map(self, name: str) -> Map:
        h = lib().lib.bpf_object__find_map_by_name(self._h, name.encode())
        if not h:
            raise LibbpfError(f"map {name} not in {self.path}", errno.ENOENT)
        return Map(h, name)

    def set_constant(self, name: str, value: int) -> bool:
        """Before load: set `const volatile` global `name` (in .rodata) to `value`; False if the object
        has no such variable.  The verifier then sees a constant and prunes the branches not taken."""
        where = self.btf().datasec_var(".rodata", name)
        rodata = next((m for m in self.maps if m.name.endswith(".rodata")), None)
        if where is None or rodata is None:
            return False
        offset, size = where
        psize = ctypes.c_size_t(0)
        data = lib().lib.bpf_map__initial_value(rodata._h, ctypes.byref(psize))
        if not data or offset + size > psize.value:
            raise LibbpfError(f"{self.path}: .rodata of {psize.value} bytes lacks {name}", errno.EINVAL)
        ctypes.memmove(data + offset, value.to_bytes(size, "little"), size)
        return True

    def btf(self) -> Btf:
        h = lib().lib.bpf_object__btf(self._h)
        if not h:
            raise LibbpfError(f"{self.path} has no BTF", errno.ENOENT)
        return Btf(h, owned=False)

    def close(self) -> None:
        if self._h:
            lib().lib.bpf_object__close(self._h)
            self._h = 0


# ------------------------------------------------------------ ring buffers


class RingBuffer:
    """Consumer side of a BPF_MAP_TYPE_RINGBUF; calls `on_sample(bytes)` per record.

    The callback runs inside ring_buffer__poll on the polling thread; it must not
    raise (an exception cannot cross the C frame), so errors are counted instead.
    """

    def __init__(self, ring: Map, on_sample: Callable[[bytes], None]) -> None:
        self.callback_errors = 0
        self._on_sample = on_sample
        self._cb = RING_SAMPLE_FN(self._sample)
        ctypes.set_errno(0)
        h = lib().lib.ring_buffer__new(ring.fd, self._cb, None, None)
        if not h:
            raise LibbpfError(f"ring buffer {ring.name}", _errno_or())
        self._h = h

    def _sample(self, _ctx: int, data: int, size: int) -> int:
        try:
            self._on_sample(ctypes.string_at(data, size))
        except Exception:  # noqa: BLE001 - must not unwind through libbpf
            self.callback_errors += 1
        return 0

    def poll(self, timeout_ms: int) -> int:
        rc = lib().lib.ring_buffer__poll(self._h, timeout_ms)
        if rc < 0 and abs(rc) != errno.EINTR:
            raise LibbpfError("ring buffer poll", rc)
        return max(int(rc), 0)

    def close(self) -> None:
        if self._h:
            lib().lib.ring_buffer__free(self._h)
            self._h = 0
