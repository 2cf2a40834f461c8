// leveldb_env: the LevelDB environment of the node's journals.
//
// LevelDB's POSIX environment maps up to 1,000 table files into memory for
// reading. Every page of a table that a compaction, a scan or a snapshot
// read has touched then counts in the process's resident memory until the
// table leaves LevelDB's table cache: a node filled with an hour of history
// held ~75 MB of journal tables that way (docs/benchmarks.md, "Memory with
// storage on"). This environment reads tables with pread(2) instead, so
// they stay in the kernel's page cache, which the kernel reclaims and the
// node's RSS does not show. Everything else is LevelDB's default
// environment.
#pragma once

namespace leveldb {
class Env;
}

namespace cairn::runtime {

/// The process-wide environment (never destroyed, like Env::Default()).
leveldb::Env* journal_env();

} // namespace cairn::runtime
