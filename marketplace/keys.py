"""Deterministic Ed25519 identities, and the signing/verification hot paths.

Every account (data owner, buyer, validator, the treasury) has an Ed25519 key
pair derived from the scenario seed, so a run is reproducible byte for byte::

    private_key_bytes = SHA-256(b"fedmarket-key\\x00" || str(seed) || b"\\x00" || account_id)

This is a *simulation* convenience: anyone who knows the seed can re-derive
every key. The ledger itself never trusts the derivation: the public key of an
account is recorded on the ledger when it registers, and the audit verifies
signatures against those recorded keys only.

Backends. Ed25519 (RFC 8032) is deterministic, so every correct implementation
produces the *same* signature bytes for the same key and message. When PyNaCl
(libsodium) is importable, :class:`Signer` and :func:`verify_signature` use it
(about 1.6x faster signing and 2x faster verification than pyca/cryptography
on the benchmark machine); otherwise pyca/cryptography. A test checks that both
backends produce byte-identical signatures and agree on valid and tampered
ones. libsodium's verification is, if anything, stricter (it also rejects
small-order public keys and non-canonical ``R``), which no derived key or
honest signer ever produces.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import fcntl
import hashlib
import os
import select
import struct
import subprocess
import sys
import weakref
from collections.abc import Callable
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

try:  # optional, faster backend (byte-identical signatures)
    from nacl.bindings import crypto_sign as _nacl_sign
    from nacl.bindings import crypto_sign_open as _nacl_open
    from nacl.exceptions import BadSignatureError as _NaclBadSignature
    from nacl.exceptions import CryptoError as _NaclError

    HAVE_SODIUM = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_SODIUM = False

__all__ = [
    "BACKEND",
    "HAVE_SODIUM",
    "Signer",
    "SigningPool",
    "derive_private_key",
    "public_key_hex",
    "verify_signature",
    "verify_signature_raw",
]

BACKEND = "libsodium" if HAVE_SODIUM else "cryptography"
"""Which Ed25519 implementation the hot paths use."""


def derive_private_key(seed: int, account: str) -> Ed25519PrivateKey:
    """The Ed25519 private key of ``account`` under scenario ``seed``."""
    return Ed25519PrivateKey.from_private_bytes(_derive_seed(seed, account))


def _derive_seed(seed: int, account: str) -> bytes:
    material = b"fedmarket-key\x00" + str(seed).encode() + b"\x00" + account.encode("utf-8")
    return hashlib.sha256(material).digest()


def public_key_hex(key: Ed25519PrivateKey) -> str:
    """Raw 32-byte public key of ``key``, hex encoded."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


class Signer:
    """A private key ready for fast repeated signing (libsodium when available).

    ``sign(message)`` returns the 64 raw signature bytes, identical to
    ``Ed25519PrivateKey.sign(message)``.
    """

    __slots__ = ("_key", "_sk", "public_hex", "sign")

    @property
    def secret(self) -> bytes:
        """libsodium's 64-byte secret key (seed || public key); empty without PyNaCl."""
        return self._sk

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_hex = public.hex()
        self.sign: Callable[[bytes], bytes]
        if HAVE_SODIUM:
            seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
            self._sk = seed + public  # libsodium's 64-byte secret key: seed || public key
            self.sign = self._sign_sodium
        else:  # pragma: no cover - depends on the environment
            self._sk = b""
            self.sign = key.sign

    @classmethod
    def derive(cls, seed: int, account: str) -> Signer:
        """The signer of ``account`` under scenario ``seed``."""
        return cls(derive_private_key(seed, account))

    @property
    def key(self) -> Ed25519PrivateKey:
        """The pyca/cryptography private key."""
        return self._key

    def _sign_sodium(self, message: bytes) -> bytes:
        return _nacl_sign(message, self._sk)[:64]


@lru_cache(maxsize=4096)
def _load_public(public_hex: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex))


def verify_signature(public_hex: str, signature_hex: str, message: bytes) -> bool:
    """True when ``signature_hex`` is a valid signature of ``message``; never raises."""
    try:
        public = bytes.fromhex(public_hex)
        signature = bytes.fromhex(signature_hex)
    except ValueError:
        return False
    return verify_signature_raw(public, signature, message)


def verify_signature_raw(public: bytes, signature: bytes, message: bytes) -> bool:
    """:func:`verify_signature` on raw bytes (32-byte key, 64-byte signature)."""
    if len(public) != 32 or len(signature) != 64:
        return False
    if HAVE_SODIUM:
        try:
            _nacl_open(signature + message, public)
        except (_NaclBadSignature, _NaclError, ValueError, TypeError):
            return False
        return True
    try:  # pragma: no cover - depends on the environment
        _load_public(public.hex()).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


# -- parallel signing ------------------------------------------------------------
#
# A persistent helper process that signs batches of messages with libsodium.
# Ed25519 signing is deterministic, so a signature computed there is byte for
# byte the one the parent would compute. The protocol is length-prefixed frames
# over the child's stdin/stdout: a request is ``<II`` (count, payload length)
# then ``count`` ``<I`` message lengths, ``count`` 64-byte secret keys and the
# messages back to back; the reply is ``count`` 64-byte signatures. The child exits on end of input,
# so it never outlives its parent (even a SIGKILLed one).

_WORKER_SOURCE = r"""
import struct, sys
rd, wr = sys.stdin.buffer, sys.stdout.buffer
unpack_from = struct.unpack_from
try:  # PyNaCl's cffi module directly: no per-call wrapper allocations
    from nacl._sodium import ffi, lib
    sign, NULL, new = lib.crypto_sign, ffi.NULL, ffi.new
    from_buffer, memmove = ffi.from_buffer, ffi.memmove
    def sign_all(buf, count):
        out = new("unsigned char[]", 64 * count)
        scratch = new("unsigned char[]", len(buf) + 64)  # >= any message + 64
        p = from_buffer(buf)
        lens = unpack_from(f"<{count}I", buf, 0)
        key = 4 * count
        pos = key + 64 * count
        for i in range(count):
            n = lens[i]
            if sign(scratch, NULL, p + pos, n, p + key) != 0:
                raise RuntimeError("crypto_sign failed")
            memmove(out + 64 * i, scratch, 64)
            key += 64
            pos += n
        return ffi.buffer(out)
except (ImportError, AttributeError):  # pragma: no cover - older PyNaCl layouts
    from nacl.bindings import crypto_sign
    def sign_all(buf, count):
        out = []
        lens = unpack_from(f"<{count}I", buf, 0)
        key = 4 * count
        pos = key + 64 * count
        for n in lens:
            out.append(crypto_sign(buf[pos:pos + n], buf[key:key + 64])[:64])
            key += 64
            pos += n
        return b"".join(out)
while True:
    head = rd.read(8)
    if len(head) < 8:
        break
    count, size = struct.unpack("<II", head)
    buf = rd.read(size)
    while len(buf) < size:
        more = rd.read(size - len(buf))
        if not more:
            sys.exit(0)
        buf += more
    wr.write(sign_all(buf, count))
    wr.flush()
"""

_LIVE_POOLS: weakref.WeakSet[SigningPool] = weakref.WeakSet()


class SigningPool:
    """One helper process signing message batches in parallel with the caller.

    ``submit(items)`` queues ``[(secret_key_64, message), ...]`` and returns a
    ticket; ``result(ticket)`` returns the signatures (64 raw bytes each), in
    order, waiting for them; ``ready(ticket)`` says without waiting whether
    they have arrived, so a caller can do other work meanwhile (the ledger's
    bulk append signs locally whatever the helper has no room for). Results
    must be collected in submission order. Use as a context manager or call
    :meth:`close`; pools still open at interpreter exit are closed by an
    ``atexit`` hook.
    """

    def __init__(self) -> None:
        if not HAVE_SODIUM:  # pragma: no cover - depends on the environment
            raise RuntimeError("parallel signing needs PyNaCl (libsodium)")
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-c", _WORKER_SOURCE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        # Roomy pipes (Linux): a block's requests never block the writer, and
        # replies never block the helper while it is owed fewer than
        # ``max_outstanding`` signatures (so the protocol cannot deadlock).
        reply_bytes = 65536
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                got = fcntl.fcntl(stream.fileno(), _F_SETPIPE_SZ, 1 << 20)
            except OSError:  # pragma: no cover - older kernels / limits
                got = 65536
            reply_bytes = got
        self.max_outstanding = reply_bytes // 64 // 2
        """Signatures that may be owed at once; collect results before submitting more."""
        self.owner_pid = os.getpid()
        """The process that started the helper (only it may talk to it)."""
        self._out = self._proc.stdout.fileno()
        os.set_blocking(self._out, False)
        self._counts: collections.deque[int] = collections.deque()
        self._received = bytearray()  # signature bytes read but not yet collected
        self._next = 0
        self._done = 0
        self.outstanding = 0
        """Signatures submitted but not yet collected."""
        self.broken = False
        """Set once the helper is found dead (a write or read failed)."""
        _LIVE_POOLS.add(self)

    @property
    def pid(self) -> int | None:
        """Process id of the helper (``None`` once closed)."""
        return None if self._proc is None else self._proc.pid

    @property
    def alive(self) -> bool:
        """Whether the helper is open and running (False once it died or was closed)."""
        return self._proc is not None and not self.broken and self._proc.poll() is None

    def submit(self, items: list[tuple[bytes, bytes]]) -> int:
        """Queue ``(secret_key, message)`` items; returns the ticket for :meth:`result`."""
        return self.submit_lists([sk for sk, _ in items], [m for _, m in items])

    def submit_lists(self, secrets: list[bytes], messages: list[bytes]) -> int:
        """:meth:`submit` with parallel lists of 64-byte secret keys and messages."""
        proc = self._alive()
        count = len(messages)
        if len(secrets) != count or any(len(sk) != 64 for sk in secrets):
            raise ValueError("need one 64-byte secret key per message")
        if self.outstanding + count > self.max_outstanding:
            raise ValueError(
                f"{self.outstanding} signatures are owed; collect some before submitting "
                f"{count} more (at most {self.max_outstanding} may be owed)"
            )
        # Request: <II count, size; then count <I lengths, the keys, the messages.
        payload = b"".join((struct.pack(f"<{count}I", *map(len, messages)), *secrets, *messages))
        assert proc.stdin is not None
        try:
            proc.stdin.write(_PACK_HEAD(count, len(payload)) + payload)
        except OSError as exc:  # BrokenPipeError: the helper is gone
            self.broken = True
            raise RuntimeError("signing helper process died") from exc
        self._counts.append(count)
        self.outstanding += count
        ticket = self._next
        self._next += 1
        return ticket

    def _read(self, wait: bool) -> None:
        """Read whatever replies have arrived (waiting for some if ``wait``)."""
        while True:
            try:
                data = os.read(self._out, 1 << 16)
            except BlockingIOError:
                if not wait:
                    return
                select.select([self._out], [], [])
                continue
            if not data:
                self.broken = True
                raise RuntimeError("signing helper process died")
            self._received += data
            return

    def owed(self) -> int:
        """Signatures submitted that have not arrived yet (reads what has, without waiting)."""
        self._read(wait=False)
        return self.outstanding - len(self._received) // 64

    def ready(self, ticket: int) -> bool:
        """Whether :meth:`result` for ``ticket`` (the oldest uncollected) would not wait."""
        self._check(ticket)
        need = 64 * self._counts[0]
        if len(self._received) < need:
            self._read(wait=False)
        return len(self._received) >= need

    def result(self, ticket: int) -> list[bytes]:
        """The signatures of request ``ticket`` (the oldest uncollected one)."""
        self._check(ticket)
        count = self._counts[0]
        size = 64 * count
        received = self._received
        while len(received) < size:
            self._read(wait=True)
        # Only now is the request collected (an interrupted wait can be retried).
        self._counts.popleft()
        self._done += 1
        self.outstanding -= count
        data = bytes(received[:size])
        del received[:size]
        return [data[i : i + 64] for i in range(0, size, 64)]

    def _check(self, ticket: int) -> None:
        self._alive()
        if ticket != self._done or not self._counts:
            raise ValueError(f"collect request {self._done} before {ticket}")

    def _alive(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError("signing pool is closed")
        return self._proc

    def close(self) -> None:
        """Stop the helper process and wait for it (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        _LIVE_POOLS.discard(self)
        if self.owner_pid != os.getpid():  # a forked copy: the helper is not ours
            return
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - defensive
            proc.kill()
            proc.wait()

    def __enter__(self) -> SigningPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_PACK_HEAD = struct.Struct("<II").pack


@atexit.register
def _close_live_pools() -> None:
    for pool in list(_LIVE_POOLS):
        pool.close()
