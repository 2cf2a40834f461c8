// block_bits: stream bytes per sealed bucket of the block codec, without a
// store (docs/benchmarks.md, "Group-by queries, seek points and lazy
// sketches"). Appends 200 blocks per shape (lognormal integer values, event
// times spread over the window; 128 one- or ten-event 1 s buckets, 60
// buckets of 60 or 600 events at 1 m) and prints the mean stream bytes per
// bucket, handles and buffer slack excluded. It uses only bucket_block's
// public interface, so the same file built against another build's library
// measures that build's codec:
//
//   build/bench/block_bits
//   g++ -std=c++20 -O2 -I/work/main bench/block_bits.cpp \
//       /work/main/build/cqrs/libcairn_cqrs.a -o /tmp/block_bits_main
#include "cqrs/block.hpp"

#include <cmath>
#include <cstdio>
#include <random>

using namespace cairn::cqrs;

int main() {
  ddsketch_mapping m{0.01};
  std::mt19937_64 rng{3};
  std::lognormal_distribution<double> lat{3, 0.8};
  constexpr int blocks = 200;
  for (int per : {1, 10, 60, 600}) {
    millis res = per >= 60 ? 60'000 : 1000;
    int buckets = per >= 60 ? 60 : 128;
    uint64_t bits = 0;
    for (int s = 0; s < blocks; ++s) {
      bucket_block blk;
      block_state st;
      millis t = 1'764'190'020'000;
      for (int i = 0; i < buckets; ++i, t += res) {
        bucket b;
        for (int k = 0; k < per; ++k)
          b.add(t + static_cast<millis>(rng() % static_cast<uint64_t>(res)),
                std::round(lat(rng)), m);
        blk.append(t, b, res, m, st);
      }
      bits += blk.bit_count();
    }
    std::printf("%4d events per bucket, resolution %6lld ms: %.3f stream bytes "
                "per bucket\n",
                per, static_cast<long long>(res),
                static_cast<double>(bits) / 8.0 / blocks / buckets);
  }
}
