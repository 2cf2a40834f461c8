#include "runtime/leveldb_env.hpp"

#include <leveldb/env.h>
#include <leveldb/slice.h>
#include <leveldb/status.h>

#include <cerrno>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <unistd.h>

namespace cairn::runtime {

namespace {

leveldb::Status io_error(const std::string& context, int err) {
  return leveldb::Status::IOError(context, std::strerror(err));
}

/// A table file read with pread(2); one descriptor per open table (the
/// table cache bounds them: journal_options::max_open_files).
class pread_file final : public leveldb::RandomAccessFile {
public:
  pread_file(std::string name, int fd) : name_(std::move(name)), fd_(fd) {
    // Compactions and snapshot reads go through a table once, front to
    // back; point reads are rare. Let the kernel read ahead.
    ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
  }

  ~pread_file() override {
    ::close(fd_);
  }

  leveldb::Status Read(uint64_t offset, size_t n, leveldb::Slice* result,
                       char* scratch) const override {
    size_t got = 0;
    while (got < n) {
      auto r = ::pread(fd_, scratch + got, n - got,
                       static_cast<off_t>(offset + got));
      if (r < 0) {
        if (errno == EINTR)
          continue;
        *result = leveldb::Slice{scratch, got};
        return io_error(name_, errno);
      }
      if (r == 0)
        break; // end of file: a short read, as LevelDB's own file reports
      got += static_cast<size_t>(r);
    }
    *result = leveldb::Slice{scratch, got};
    return leveldb::Status::OK();
  }

private:
  std::string name_;
  int fd_;
};

class journal_env_impl final : public leveldb::EnvWrapper {
public:
  journal_env_impl() : EnvWrapper(leveldb::Env::Default()) {
  }

  leveldb::Status NewRandomAccessFile(const std::string& name,
                                      leveldb::RandomAccessFile** result) override {
    *result = nullptr;
    int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return io_error(name, errno);
    *result = new pread_file(name, fd);
    return leveldb::Status::OK();
  }
};

} // namespace

leveldb::Env* journal_env() {
  static auto* env = new journal_env_impl;
  return env;
}

} // namespace cairn::runtime
