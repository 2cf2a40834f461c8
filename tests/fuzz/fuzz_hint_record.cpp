// libFuzzer target: the hinted-handoff record decoder (storage-format.md).
// Invariants: no crash or sanitizer report; a record that decodes
// re-encodes to bytes that decode to the same record.
#include "cqrs/hint_record.hpp"

#include <cstdint>
#include <cstdlib>

using namespace cairn::cqrs;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in{reinterpret_cast<const char*>(data), size};
  hint_record h;
  if (!decode_hint(in, h))
    return 0;
  if (h.partitions.size() != h.batches.size())
    std::abort();
  std::string again;
  encode_hint(h, again);
  hint_record h2;
  if (!decode_hint(again, h2) || h2.key != h.key
      || h2.partitions != h.partitions)
    std::abort();
  for (size_t i = 0; i < h.batches.size(); ++i)
    if (h.batches[i].size() != h2.batches[i].size())
      std::abort();
  return 0;
}
