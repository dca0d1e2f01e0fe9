"""[pseudonymization] Keyed HMAC-SHA256 pseudonyms under a key per period and per destination (C2, C11).

Where a period's key comes from decides who can recompute past pseudonyms:
- `key_file` (recommended): a one-way ratchet. key(n+1) = HMAC-SHA256(key(n), "privproxy/ratchet/v1/" + period id
  n+1). The file holds one period's key; `privproxy keys rotate` replaces it with the next one, and every instance
  ratchets its own copy forward when the period turns and drops the old one. Once the file is rotated past a
  period, nothing an instance or the file holds yields that period's key: its pseudonyms can no longer be recomputed.
- `secret_env`: key(n) = HMAC-SHA256(secret, "privproxy/pseudonym/v1/" + period id n). Instances agree, but whoever
  holds the secret can recompute the key, and the pseudonyms, of every past period.
- neither: a random key per process, ratcheted in memory as above: forgotten, but instances disagree.
for_destination(name) gives a destination (the log, the origin, a vendor) pseudonyms under its own key,
HMAC-SHA256(key(n), "privproxy/destination/v1/" + name), so two destinations cannot join records on a pseudonym.
"""

from __future__ import annotations

import abc
import base64
import contextlib
import datetime
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from privproxy.errors import ConfigError
from privproxy.schema_types import ENV_NAME, ENV_NAME_PATTERN, obj, string
from privproxy.yamlsrc import beside

if TYPE_CHECKING:
    from privproxy.yamlsrc import Node

logger = logging.getLogger(__name__)

ROTATIONS = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400}
MEMO_SIZE = 8192  # pseudonyms remembered within a period
MAX_DESTINATIONS = 64  # "log", "origin" and the vendors; further names are served, not cached
POLL_SECONDS = 1.0  # the key file is stat()ed at most this often
ROTATE_GRACE = 600  # a key file one period behind is reported this long into the period (cron runs late)
KEY_BYTES = 32
EARLIEST, LATEST = 1577836800, 7258118400  # 2020-01-01 and 2200-01-01: a period outside is no key file's
_PERIOD = re.compile(r"(hourly|daily|weekly):(\d{1,12})")
_HEX_KEY = re.compile(r"[0-9a-f]{64}")
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


@dataclass(frozen=True, slots=True)
class Settings:
    secret_env: str = "PRIVPROXY_SECRET"
    rotation: str = "daily"
    key_file: str = ""  # when set, the key file is the only source of keys (secret_env is not read)
    prefix: str = "pp_"
    length: int = 16  # base32 characters kept: 80 bits


DEFAULT = Settings()
SCHEMA = obj("Keyed pseudonyms for the `hash` action (C2, C11).", {
    "key_file": string("Shared key file (relative to this file) holding the current period's key, advanced "
                       "one way by `privproxy keys rotate`: past keys are forgotten. Recommended; when set, "
                       "secret_env is not used."),
    "secret_env": string("Environment variable holding a fixed secret (never the YAML itself); whoever holds "
                         "it can recompute past pseudonyms. Used when key_file is not set.",
                         default=DEFAULT.secret_env, pattern=ENV_NAME_PATTERN),
    "rotation": string("Key period. With key_file (or neither) past keys are forgotten; with secret_env they "
                       "can be recomputed from the secret.", enum=tuple(ROTATIONS), default=DEFAULT.rotation),
})


def parse(node: Node | None, path: str) -> Settings:
    """The `pseudonymization:` section of the filters.yaml at `path` (a key file is named relative to it)."""
    if node is None:
        return DEFAULT
    m = node.mapping(SCHEMA.props)
    env = SCHEMA.read(m, "secret_env")
    if not ENV_NAME.fullmatch(env):
        m["secret_env"].error(f"`{env}` is not an environment variable name", "e.g. PRIVPROXY_SECRET")
    key_file = DEFAULT.key_file
    if "key_file" in m:
        key_file = beside(path, m["key_file"].string().strip())
        if not key_file:
            m["key_file"].error("no file named", "e.g. key_file: keys/pseudonym.json (relative to this file), "
                                                 "or remove the line to use secret_env")
    # The key file itself is read by the Pseudonymizer: a missing or broken one is a warning (each process then
    # uses its own random key) and a missing secret for --require-secrets, as an unset secret_env variable is.
    return Settings(secret_env=env, rotation=SCHEMA.read(m, "rotation"), key_file=key_file)


def period_id(now: float, rotation: str) -> str:
    return f"{rotation}:{int(now) // ROTATIONS[rotation]}"


def parse_period(text: str) -> tuple[str, int]:
    """"daily:20423" -> ("daily", 20423): the 20423rd day since 1970-01-01 UTC."""
    m = _PERIOD.fullmatch(text)
    if not m:
        raise ValueError(f"`{text}` is not a period id (ROTATION:NUMBER, e.g. daily:20423)")
    return m.group(1), int(m.group(2))


def period_start(period: str) -> int:
    rotation, n = parse_period(period)
    return n * ROTATIONS[rotation]


def ratchet(key: bytes, period: str) -> bytes:
    """The key of `period` from the key of the period before it; HMAC-SHA256 cannot be run backwards."""
    return hmac.digest(key, b"privproxy/ratchet/v1/" + period.encode(), "sha256")


def advance(key: bytes, period: str, rotation: str, index: int) -> tuple[int, bytes]:
    """Ratchet `key` of `period` forward to period `index` of `rotation`; an earlier target leaves it where it
    is (never backwards). A key of another rotation (the setting was changed) first steps once into the period
    of `rotation` holding its start, so all holders of one key file reach the same keys."""
    rot, n = parse_period(period)
    if rot != rotation:
        n = n * ROTATIONS[rot] // ROTATIONS[rotation]
        key = ratchet(key, f"{rotation}:{n}")
    while n < index:
        n += 1
        key = ratchet(key, f"{rotation}:{n}")
    return n, key


_group: tuple[str, bytes] | None = None  # (period, key): see share_random_key


def share_random_key(period: str, key: bytes) -> None:
    """In a worker of `privproxy run --workers`: where this process would draw a random key (no key file read, no
    secret), start from the one its supervisor drew for all its workers, so a visitor gets the same pseudonym
    whichever worker answers. Like a process's own random key it is never stored and dies with the supervisor."""
    global _group
    _group = (period, key) if key else None


def destination_key(key: bytes, name: str) -> bytes:
    return hmac.digest(key, b"privproxy/destination/v1/" + name.encode(), "sha256")


def fingerprint(key: bytes) -> str:
    """Names a key without revealing anything about it, to compare instances and files."""
    return hmac.digest(key, b"privproxy/fingerprint/v1", "sha256")[:8].hex()


# -- the key file ----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class KeyFile:
    """One line of JSON: {"privproxy_key_file": 1, "period": "daily:20423", "key": "<64 hex digits>",
    "written": "2026-12-01T00:05:00Z"}; only the key of `period` (32 bytes), never an older one."""

    period: str
    key: bytes = field(repr=False)
    written: str = ""


def read_key_file(path: str | Path) -> KeyFile:
    """Raises ConfigError naming the file, the line where it applies, and what to do; never the key."""
    p = str(path)
    redo = f"recreate it with `privproxy keys init --force --file {p}` (every pseudonym changes once)"
    try:
        text = Path(p).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such key file", path=p, hint=f"create it with `privproxy keys init --file {p}`") from None
    except UnicodeDecodeError:
        raise ConfigError("not a privproxy key file (not UTF-8 text)", path=p, hint=redo) from None
    except OSError as e:
        raise ConfigError(f"cannot read the key file: {e.strerror or e}", path=p,
                          hint="the proxy's user must be able to read it (mode 0600, owned by that user)") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"not a privproxy key file (invalid JSON: {e.msg})", path=p, line=e.lineno, col=e.colno,
                          hint=redo) from None
    if not isinstance(doc, dict) or doc.get("privproxy_key_file") != 1:
        raise ConfigError('not a privproxy key file (no "privproxy_key_file": 1)', path=p, line=1, col=1, hint=redo)

    def bad(name: str, message: str) -> ConfigError:
        at = text.find(f'"{name}"')
        line = text.count("\n", 0, at) + 1 if at >= 0 else 1
        col = at - text.rfind("\n", 0, at) if at >= 0 else 1
        return ConfigError(f"`{name}`: {message}", path=p, line=line, col=col, hint=redo)

    for name in sorted(set(doc) - {"privproxy_key_file", "period", "key", "written"}):
        raise bad(name, "unknown field")
    period = doc.get("period")
    if not isinstance(period, str) or not _PERIOD.fullmatch(period):
        raise bad("period", "expected ROTATION:NUMBER, e.g. daily:20423")
    if not EARLIEST <= period_start(period) < LATEST:  # also bounds the ratchet steps to reach today
        raise bad("period", f"{period} starts at {utc(period_start(period))}, not a time a key file was written")
    key = doc.get("key")
    if not isinstance(key, str) or not _HEX_KEY.fullmatch(key):
        raise bad("key", "expected 64 lower-case hexadecimal digits (32 bytes)")  # the value is never echoed
    written = doc.get("written")
    return KeyFile(period, bytes.fromhex(key), written if isinstance(written, str) else "")


def write_key_file(path: str | Path, state: KeyFile) -> None:
    """Replace the file atomically with mode 0600: readers see the old file or the new one, never a mix or an
    empty one. The old file is unlinked by the rename, not overwritten: its blocks are freed like any deleted
    file's (keep the file on tmpfs, or in a Kubernetes Secret, where that matters)."""
    p = Path(path)
    text = json.dumps({"privproxy_key_file": 1, "period": state.period, "key": state.key.hex(),
                       "written": state.written}) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def utc(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- pseudonyms -------------------------------------------------------------------------------------------

_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_B32_PAIRS = tuple(a + b for a in _B32 for b in _B32)  # 10 bits -> two characters


def b32_prefix(data: bytes, length: int) -> str:
    """The first `length` characters of lower-case RFC 4648 base32 of data, without encoding all of it
    (base64.b32encode is pure Python and was a hot spot)."""
    p = _B32_PAIRS
    if length == 16 and len(data) >= 10:  # the default: 80 bits, eight table look-ups, no loop
        n = int.from_bytes(data[:10], "big")
        return (p[n >> 70] + p[(n >> 60) & 1023] + p[(n >> 50) & 1023] + p[(n >> 40) & 1023]
                + p[(n >> 30) & 1023] + p[(n >> 20) & 1023] + p[(n >> 10) & 1023] + p[n & 1023])
    pairs = (length + 1) // 2  # characters are taken two at a time: 10 bits each
    nbytes = (pairs * 10 + 7) // 8
    if nbytes > len(data):  # base32 pads the last group; leave that case to the library
        return base64.b32encode(data).decode()[:length].lower()
    n = int.from_bytes(data[:nbytes], "big") >> (nbytes * 8 - pairs * 10)
    return "".join([p[(n >> (10 * (pairs - 1 - i))) & 1023] for i in range(pairs)])[:length]


class KeyedPseudonyms(abc.ABC):
    """What Pseudonymizer and its destinations share: pseudonym(value, field), key(), period(), settings,
    ephemeral. One key at a time, with HMAC's padded-key states hashed once per key and a memo."""

    settings: Settings

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._since = self._until = 0.0
        # (key, HMAC inner state, outer state, memo), replaced in one assignment: large beacons are scrubbed on
        # worker threads, and a pseudonym computed while the key rotates must never mix two keys.
        self._state: tuple[bytes, Any, Any, dict[int, Any]] = (b"", hashlib.sha256(), hashlib.sha256(), {})

    @property
    def _key(self) -> bytes:
        return self._state[0]

    @abc.abstractmethod
    def _fresh(self) -> None:
        """Move to the key of the current period when the clock has left the one in use."""

    def _use(self, key: bytes) -> None:
        # HMAC's two padded-key blocks, hashed once per key instead of on every call (2.5x faster). The previous
        # key, its states and its memo are dropped with the old tuple: no reference to them remains.
        block = key.ljust(64, b"\0")
        self._state = (key, hashlib.sha256(block.translate(_IPAD)), hashlib.sha256(block.translate(_OPAD)), {})

    def key(self) -> bytes:
        self._fresh()
        return self._key

    def mac(self, message: bytes) -> bytes:
        """HMAC-SHA256 of `message` under the current period's key (the same as hmac.digest(self.key(), ...)),
        from the precomputed padded-key states: 1.5 instead of 4.8 us, once per identifier in a beacon."""
        self._fresh()
        return _digest(self._state, message)

    def remember[T](self, key: tuple[Any, ...], make: Callable[[], T]) -> T:
        """make(), remembered for the current period under `key` like the pseudonyms themselves (see pseudonym):
        for pseudonyms of other shapes (scrub.Scrubber.shaped). `make` must compute with this instance's key."""
        self._fresh()
        return _memoized(self._state[3], hash(("remember", *key)), make)

    def pseudonym(self, value: str, field: str = "") -> str:
        # The field name is mixed in so that the same value under two names gives two pseudonyms.
        # HMAC-SHA256(key, field NUL value), from the precomputed inner and outer states.
        self._fresh()
        # A visitor's cookies come back on every request: their pseudonyms are remembered for this period
        # only (forgotten with its key at rotation). The memo is keyed by Python's per-process keyed hash
        # (SipHash) of the pair, so it holds no identifier in the clear; a collision, about 2^-64 per pair,
        # would only give two values one pseudonym. Key states and memo come from one snapshot of the state.
        state = self._state
        return _memoized(state[3], hash((field, value)), lambda: self.settings.prefix + b32_prefix(
            _digest(state, f"{field}\x00{value}".encode()), self.settings.length))


def _digest(state: tuple[bytes, Any, Any, dict[int, Any]], message: bytes) -> bytes:
    """HMAC-SHA256 from a state's precomputed inner and outer padded-key hashes (KeyedPseudonyms._use)."""
    inner = state[1].copy()
    inner.update(message)
    outer = state[2].copy()
    outer.update(inner.digest())
    return outer.digest()


def _memoized[T](memo: dict[int, Any], key: int, make: Callable[[], T]) -> T:
    """memo[key], made and kept when missing; the memo is emptied when full (names come from traffic)."""
    found = memo.get(key)
    if found is None:
        found = make()
        if len(memo) >= MEMO_SIZE:
            memo.clear()
        memo[key] = found
    return found


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """For `check`, the startup log and metrics; holds no key material."""

    mode: str  # key_file | secret | ephemeral, as configured
    ephemeral: bool  # no shared key in use (no key file read yet, or none configured and no secret)
    period: str  # the period whose key is in use
    key_file: str = ""
    file_period: str = ""  # the period the key file holds, as last read
    file_behind: int = 0  # periods the key file lags behind the clock (it still holds a key they derive from)
    file_problem: str = ""  # why the key file cannot be used, as last seen
    disagreements: int = 0  # times the key file held another key than this instance for a period it had


class Pseudonymizer(KeyedPseudonyms):
    """The period key, from a key file, a fixed secret or a random start, and a Destination per name."""

    def __init__(self, settings: Settings, secret: bytes | None = None, clock: Callable[[], float] = time.time
                 ) -> None:
        super().__init__(settings)
        self.clock = clock
        env = os.environ.get(settings.secret_env, "") if not settings.key_file else ""
        self.mode = "key_file" if settings.key_file else "secret" if secret is not None or env else "ephemeral"
        self._secret = (secret if secret is not None else env.encode()) if self.mode == "secret" else b""
        self.ephemeral = self.mode != "secret"  # a key file clears it once read
        self.disagreements = 0
        self._index = -1  # number of the period whose key is held; -1: none yet
        self._period = ""
        self._epoch = 0  # counts key changes, so destinations know when to derive theirs again
        self._destinations: dict[str, Destination] = {}
        self._stamp: tuple[int, ...] | None = None
        self._file_index = -1  # the key file's period in this rotation, as last read
        self._file_period = ""
        self._file_problem = ""
        self._said_behind: tuple[int, ...] | None = None
        self._quiet = True  # what the first look finds is reported by warnings(), not logged
        self._rotate(clock())
        self._quiet = False

    def period(self) -> str:
        self._fresh()
        return self._period

    def for_destination(self, name: str) -> Destination:
        """Pseudonyms for one destination ("log", "origin", a vendor name): unrelated to any other
        destination's for the same value, stable within the period, equal on every instance sharing keys."""
        got = self._destinations.get(name)
        if got is None:
            if not name:
                raise ValueError("a destination needs a name")
            got = Destination(self, name)
            if len(self._destinations) < MAX_DESTINATIONS:
                self._destinations[name] = got
        return got

    def _fresh(self) -> None:
        """Rotate when the clock has left the current period (and, with a key file, look at it each second)."""
        now = self.clock()
        if not self._since <= now < self._until:
            self._rotate(now)

    def _rotate(self, now: float) -> None:
        rotation = self.settings.rotation
        seconds = ROTATIONS[rotation]
        index = int(now) // seconds
        if self.mode == "secret":
            if index != self._index:  # any period, forwards or back: the secret recomputes it
                self._set(index, hmac.digest(self._secret, f"privproxy/pseudonym/v1/{rotation}:{index}".encode(),
                                             "sha256"))
            self._since, self._until = index * seconds, (index + 1) * seconds
            return
        if self.mode == "key_file":
            self._poll(index)
        if self._index < 0 and _group is not None:  # a worker: the random key its supervisor drew for all
            self._set(*advance(_group[1], _group[0], rotation, index))
            share_random_key(self._period, self._key)  # kept at this period: the older key is not held on
        elif self._index < 0:  # no key file could be read: a random key of this process, never stored
            self._set(index, secrets.token_bytes(KEY_BYTES))
        elif index > self._index:  # the period turned: one way forward, the old key dropped
            self._set(*advance(self._key, self._period, rotation, index))
            if _group is not None and self.mode != "key_file":
                share_random_key(self._period, self._key)  # a pseudonymizer made later (a reload) starts here
        self._since, self._until = min(index, self._index) * seconds, (self._index + 1) * seconds
        if self.mode == "key_file":
            self._until = min(self._until, now + POLL_SECONDS)
            self._check_behind(now, index)

    def _set(self, index: int, key: bytes) -> None:
        self._index = index
        self._period = f"{self.settings.rotation}:{index}"
        self._use(key)
        self._epoch += 1

    def _poll(self, index: int) -> None:
        """Read the key file when it changed (mtime, size or inode: the kubelet swaps a symlink)."""
        path = self.settings.key_file
        try:
            st = os.stat(path)
            stamp: tuple[int, ...] = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError as e:
            stamp = (-1, e.errno or 0)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            got = read_key_file(path)
        except ConfigError as e:
            self._file_problem = str(e)
            if not self._quiet:
                logger.error("privproxy: pseudonymization key file unusable: %s; %s", e, "keeping the key in use"
                             if not self.ephemeral else "this process keeps a random key of its own meanwhile")
            return
        self._file_problem = ""
        self._adopt(got, index)

    def _adopt(self, got: KeyFile, index: int) -> None:
        """Take the file's key; it must agree with the key held wherever both reach, else say so and follow
        the file, so instances converge. Never backwards: the later of the two periods is kept."""
        rotation, path = self.settings.rotation, self.settings.key_file
        n, key = advance(got.key, got.period, rotation, -1)
        if n > index + 1:  # a key from the future is a wrong clock here or where it was written: not followed
            self._file_problem = (f"{path}: period {got.period} is {n - index} periods ahead of this host's clock "
                                  f"({rotation}:{index}) — check both clocks (NTP) and rotate the file again")
            if not self._quiet:
                logger.error("privproxy: pseudonymization key file unusable: %s", self._file_problem)
            return
        self._file_index, self._file_period = n, got.period
        at = max(n, index, self._index)
        if not self.ephemeral:
            _, theirs = advance(key, f"{rotation}:{n}", rotation, self._index)
            _, ours = advance(self._key, self._period, rotation, n)
            if not hmac.compare_digest(theirs, ours):
                self.disagreements += 1
                logger.error("privproxy: the pseudonymization key file %s (period %s) holds another key than this "
                             "instance had for period %s (fingerprints %s and %s): it was re-initialised, or "
                             "instances were given different files. Switching to the file so instances converge; "
                             "pseudonyms change now. Give every instance the same file (`privproxy keys show`).",
                             path, got.period, f"{rotation}:{max(n, self._index)}", fingerprint(theirs),
                             fingerprint(ours))
        elif self._index >= 0 and not self._quiet:
            logger.warning("privproxy: pseudonymization key file %s read: pseudonyms now agree with the other "
                           "instances (until now this process used a random key of its own)", path)
        self.ephemeral = False
        _, key = advance(key, f"{rotation}:{n}", rotation, at)
        if key != self._key:
            self._set(at, key)

    def _late(self, now: float, index: int) -> bool:
        """The key file should have been rotated by now (one period behind only after the grace)."""
        behind = index - self._file_index if self._file_index >= 0 else 0
        return behind > 1 or (behind == 1 and now - index * ROTATIONS[self.settings.rotation] >= ROTATE_GRACE)

    def _check_behind(self, now: float, index: int) -> None:
        if self._late(now, index):
            if self._said_behind != self._stamp and not self._quiet:
                logger.warning("privproxy: %s", self._behind_text(index))
            self._said_behind = self._stamp

    def _behind_text(self, index: int) -> str:
        path = self.settings.key_file
        return (f"the pseudonymization key file {path} holds period {self._file_period}, {index - self._file_index} "
                f"period(s) behind the current one ({self.settings.rotation}:{index}): instances ratchet forward in "
                f"memory, but whoever reads the file can still recompute the pseudonyms since {self._file_period}; "
                f"run `privproxy keys rotate --file {path}` at the start of each period (cron or a Kubernetes "
                "CronJob)")

    def status(self) -> KeyStatus:
        self._fresh()
        index = int(self.clock()) // ROTATIONS[self.settings.rotation]
        behind = max(0, index - self._file_index) if self._file_index >= 0 else 0
        return KeyStatus(self.mode, self.ephemeral, self._period, self.settings.key_file, self._file_period,
                         behind, self._file_problem, self.disagreements)

    def warnings(self, where: str) -> list[str]:
        """What `check` and the startup log say about the keys, so nobody believes more than the code does."""
        s, env = self.status(), self.settings.secret_env
        if s.mode == "secret":
            return [f"{where}: pseudonymization keys come from a fixed secret ({env}): whoever holds it can "
                    "recompute the pseudonyms of every past period, so they are unlinkable only for those without "
                    "it; set pseudonymization.key_file and rotate it with `privproxy keys rotate` so that past "
                    "keys are really forgotten"]
        if s.mode == "ephemeral":
            return [f"{where}: the environment variable {env} is not set and no pseudonymization.key_file is "
                    "configured: each process draws a random key (never stored), so pseudonyms change at every "
                    "restart and differ between instances; for instances that agree, set key_file (past keys "
                    f"forgotten) or {env} (whoever holds that secret can recompute every past pseudonym)"]
        out = []
        if s.file_problem:
            out.append(f"{where}: pseudonymization.key_file: {s.file_problem}; " + (
                "until it can be read each process uses a random key of its own, so pseudonyms differ between "
                "instances" if s.ephemeral else "the key in use is kept and ratcheted in memory"))
        now = self.clock()
        index = int(now) // ROTATIONS[self.settings.rotation]
        if self._late(now, index):
            out.append(f"{where}: {self._behind_text(index)}")
        return out

    def missing_secret(self) -> str:
        """Why instances would not agree (for --require-secrets); empty when they would."""
        if not self.ephemeral:
            return ""
        if self.mode == "key_file":
            return f"the pseudonymization key file cannot be used: {self._file_problem}"
        return (f"the environment variable {self.settings.secret_env} (pseudonymization secret) is not set and no "
                "pseudonymization.key_file is configured")


class Destination(KeyedPseudonyms):
    """One destination's pseudonyms: HMAC-SHA256 under HMAC-SHA256(period key, "privproxy/destination/v1/"
    + name), derived again whenever the period key changes."""

    def __init__(self, parent: Pseudonymizer, name: str) -> None:
        super().__init__(parent.settings)
        self.name = name
        self._parent = parent
        self._epoch = -1

    @property
    def ephemeral(self) -> bool:
        return self._parent.ephemeral

    def period(self) -> str:
        return self._parent.period()

    def _fresh(self) -> None:
        now = self._parent.clock()
        if not self._since <= now < self._until:
            parent = self._parent
            parent._fresh()
            if parent._epoch != self._epoch:
                self._epoch = parent._epoch
                self._use(destination_key(parent._key, self.name))
            self._since, self._until = parent._since, parent._until
