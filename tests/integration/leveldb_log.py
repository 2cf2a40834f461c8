"""Reading and surgically corrupting LevelDB write-ahead log files (*.log).

Used by the persistence tests to corrupt a Cairn snapshot or journal record
*value* on disk while keeping LevelDB's own framing valid, so that LevelDB
hands the corrupted bytes to Cairn and Cairn's checksums (docs/storage-format.md)
must catch them. Standard library only.

LevelDB's log format (leveldb/doc/log_format.md): the file is a sequence of
32 KiB blocks; each physical record is

    checksum u32 LE   masked CRC-32C of (type byte + data)
    length   u16 LE
    type     u8       1 FULL, 2 FIRST, 3 MIDDLE, 4 LAST (0: zero padding)
    data     length bytes

A block tail shorter than the 7-byte header is zero filler. Logical records
(FULL, or FIRST MIDDLE* LAST) hold one WriteBatch each:

    sequence u64 LE, count u32 LE, then per entry
      0x01 varint-len key varint-len value   (Put)
      0x00 varint-len key                    (Delete)

As long as nothing compacted the memtable (32 MiB write buffer in Cairn), a
fresh database keeps every write since it was opened in its newest .log file;
on the next open LevelDB replays that log. So: write, stop the node, patch a
value byte here and fix the fragment's CRC, start the node.
"""

import os
import struct

BLOCK_SIZE = 32768
HEADER_SIZE = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4

# -- CRC-32C (Castagnoli, reflected 0x82F63B78) -------------------------------

_CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    t = _CRC_TABLE
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283

_MASK_DELTA = 0xA282EAD8


def mask_crc(crc):
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


# -- parsing -------------------------------------------------------------------

class Fragment:
    __slots__ = ("header_off", "data_off", "length", "type")

    def __init__(self, header_off, data_off, length, rtype):
        self.header_off, self.data_off = header_off, data_off
        self.length, self.type = length, rtype


class LogRecord:
    """One logical record: its bytes and the fragments they came from."""

    def __init__(self, path, data, fragments):
        self.path, self.data, self.fragments = path, data, fragments

    def file_offset(self, logical_off):
        """(fragment, offset in the file) of logical byte `logical_off`."""
        pos = 0
        for f in self.fragments:
            if logical_off < pos + f.length:
                return f, f.data_off + (logical_off - pos)
            pos += f.length
        raise IndexError(logical_off)


def read_records(path):
    """Yields the logical records of one .log file (stops at a torn tail)."""
    with open(path, "rb") as fh:
        buf = fh.read()
    off = 0
    pending, frags = [], []
    while off < len(buf):
        left_in_block = BLOCK_SIZE - (off % BLOCK_SIZE)
        if left_in_block < HEADER_SIZE:
            off += left_in_block
            continue
        if off + HEADER_SIZE > len(buf):
            break
        _crc, length, rtype = struct.unpack_from("<IHB", buf, off)
        if rtype == 0 and length == 0:
            off += left_in_block  # preallocated zeros
            continue
        data_off = off + HEADER_SIZE
        if data_off + length > len(buf):
            break  # torn write at the tail
        frag = Fragment(off, data_off, length, rtype)
        chunk = buf[data_off:data_off + length]
        off = data_off + length
        if rtype == FULL:
            yield LogRecord(path, chunk, [frag])
            pending, frags = [], []
        elif rtype == FIRST:
            pending, frags = [chunk], [frag]
        elif rtype == MIDDLE:
            if frags:
                pending.append(chunk)
                frags.append(frag)
        elif rtype == LAST:
            if frags:
                pending.append(chunk)
                frags.append(frag)
                yield LogRecord(path, b"".join(pending), frags)
            pending, frags = [], []
        else:
            pending, frags = [], []


def _varint(buf, pos):
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


class Entry:
    """One Put/Delete of a WriteBatch with where its value lives."""
    __slots__ = ("op", "key", "value", "record", "value_off", "batch_seq")

    def __init__(self, op, key, value, record, value_off, batch_seq):
        self.op, self.key, self.value = op, key, value
        self.record, self.value_off, self.batch_seq = record, value_off, batch_seq


def batch_entries(record):
    data = record.data
    if len(data) < 12:
        return
    seq, count = struct.unpack_from("<QI", data, 0)
    pos = 12
    for _ in range(count):
        tag = data[pos]
        pos += 1
        klen, pos = _varint(data, pos)
        key = data[pos:pos + klen]
        pos += klen
        if tag == 1:
            vlen, pos = _varint(data, pos)
            yield Entry("put", key, data[pos:pos + vlen], record, pos, seq)
            pos += vlen
        elif tag == 0:
            yield Entry("del", key, None, record, None, seq)
        else:
            raise ValueError(f"unknown WriteBatch tag {tag} in {record.path}")


def log_files(db_dir):
    names = [n for n in os.listdir(db_dir) if n.endswith(".log") and n[:-4].isdigit()]
    return [os.path.join(db_dir, n) for n in sorted(names, key=lambda n: int(n[:-4]))]


def live_entries(db_dir):
    """{key: Entry} of the keys whose newest write in the .log files is a Put
    (what the database holds, if nothing was compacted into tables)."""
    state = {}
    for path in log_files(db_dir):
        for rec in read_records(path):
            for e in batch_entries(rec):
                if e.op == "put":
                    state[e.key] = e
                else:
                    state.pop(e.key, None)
    return state


def table_files(db_dir):
    return [n for n in os.listdir(db_dir) if n.endswith(".ldb") or n.endswith(".sst")]


# -- Cairn keys (docs/storage-format.md section 1) -----------------------------

def cairn_key(key):
    """(kind, partition, seq) of a 13-byte Cairn key, or None."""
    if len(key) != 13:
        return None
    kind = chr(key[0])
    partition, = struct.unpack_from(">I", key, 1)
    seq, = struct.unpack_from(">Q", key, 5)
    return kind, partition, seq


def cairn_entries(db_dir, kind):
    """{(partition, seq): Entry} of live Cairn keys of `kind` ('j' or 's')."""
    out = {}
    for key, e in live_entries(db_dir).items():
        k = cairn_key(key)
        if k and k[0] == kind:
            out[(k[1], k[2])] = e
    return out


# -- corruption ----------------------------------------------------------------

def flip_value_byte(entry, value_pos, xor=0x5A):
    """XORs byte `value_pos` of the entry's value in its .log file and
    rewrites the masked CRC of the fragment holding it, so LevelDB accepts the
    record and returns the corrupted value. Returns the file offset."""
    rec = entry.record
    frag, file_off = rec.file_offset(entry.value_off + value_pos)
    with open(rec.path, "r+b") as fh:
        fh.seek(file_off)
        old = fh.read(1)[0]
        fh.seek(file_off)
        fh.write(bytes([old ^ xor]))
        fh.seek(frag.data_off)
        data = fh.read(frag.length)
        crc = mask_crc(crc32c(bytes([frag.type]) + data))
        fh.seek(frag.header_off)
        fh.write(struct.pack("<I", crc))
        fh.flush()
        os.fsync(fh.fileno())
    return file_off


def verify_fragment_crcs(path):
    """Number of fragments whose CRC does not match (0 expected)."""
    bad = 0
    with open(path, "rb") as fh:
        buf = fh.read()
    for rec in read_records(path):
        for f in rec.fragments:
            stored, = struct.unpack_from("<I", buf, f.header_off)
            data = buf[f.data_off:f.data_off + f.length]
            if mask_crc(crc32c(bytes([f.type]) + data)) != stored:
                bad += 1
    return bad


# -- Cairn journal record decoding (docs/storage-format.md section 2) ----------

def _svarint(buf, pos):
    u, pos = _varint(buf, pos)
    return (u >> 1) ^ -(u & 1), pos


def decode_journal_record(value, dictionary=None):
    """(accepted_at, key bytes, [(series_key bytes, ts, value)]) of a version 1
    record, or of a version 2 record given `dictionary` (the list of series
    keys the partition's earlier records defined since their last reset;
    updated in place, cleared by a reset record). Raises ValueError where
    the C++ decoder reports `malformed` (a record before it is missing).
    Does not check the CRC."""
    version = value[0]
    if version not in (1, 2) or (version == 2 and dictionary is None):
        raise ValueError("journal record version %d" % version)
    blen, = struct.unpack_from("<I", value, 1)
    body = value[5:5 + blen]
    pos = 0
    if version == 2:
        flags = body[pos]
        pos += 1
        if flags & 1:
            dictionary.clear()
    accepted_at, pos = _svarint(body, pos)
    klen, pos = _varint(body, pos)
    key = body[pos:pos + klen]
    pos += klen
    if version == 2:
        first_new, pos = _varint(body, pos)
        if first_new != len(dictionary):
            raise ValueError("dictionary has %d series, record expects %d"
                             % (len(dictionary), first_new))
        series = dictionary
    else:
        series = []
    nseries, pos = _varint(body, pos)
    for _ in range(nseries):
        l, pos = _varint(body, pos)
        series.append(body[pos:pos + l])
        pos += l
    nev, pos = _varint(body, pos)
    events = []
    if version == 1:
        for _ in range(nev):
            si, pos = _varint(body, pos)
            ts, v = struct.unpack_from("<qd", body, pos)
            pos += 16
            events.append((series[si], ts, v))
        return accepted_at, key, events
    ts = accepted_at
    for _ in range(nev):
        tagged, pos = _varint(body, pos)
        delta, pos = _svarint(body, pos)
        ts += delta
        if tagged & 1:
            v, pos = _svarint(body, pos)
            v = float(v)
        else:
            v, = struct.unpack_from("<d", body, pos)
            pos += 8
        if (tagged >> 1) >= len(series):
            raise ValueError("unknown series id %d" % (tagged >> 1))
        events.append((series[tagged >> 1], ts, v))
    return accepted_at, key, events


def replay_partition(values, skip=()):
    """Decodes a partition's records (values in seq order, from a dictionary
    reset on) as recovery does with skip-corrupt: the indexes in `skip` are
    unreadable, and so is every later record that names series only a skipped
    one defined. Returns (decoded [(index, events)], skipped [index])."""
    dictionary, decoded, skipped = [], [], []
    for i, value in enumerate(values):
        if i in skip:
            skipped.append(i)
            continue
        try:
            decoded.append((i, decode_journal_record(value, dictionary)[2]))
        except ValueError:
            skipped.append(i)
    return decoded, skipped


def snapshot_covered_seq(value):
    """covered_seq from a snapshot envelope header (None if no CSNP magic)."""
    if value[:4] != b"CSNP":
        return None
    return struct.unpack_from("<Q", value, 9)[0]
