// Dynamic task scheduling on the intra-op thread pool, shared by the CPU kernels.
#pragma once

#include <ATen/Parallel.h>

#include <atomic>
#include <cstdint>

namespace pyflowops {

// Below this much work (pixels or items) a call stays on the calling thread: waking
// the pool costs more than the work (milliseconds on a loaded machine for a 5x7 image).
constexpr int64_t kMinParallelWork = 16384;

// body(next) on every intra-op thread; next() hands out tasks 0..count-1 one at a
// time (-1 when done). Dynamic, unlike parallel_for's fixed split: uneven tasks
// balance, and on a busy machine a descheduled thread does not hold back a fixed
// share of the work. Results never depend on which thread ran a task. `work`: the
// call's total work, in the unit of kMinParallelWork.
template <typename Body>
void parallel_tasks(int64_t count, int64_t work, const Body& body) {
  std::atomic<int64_t> counter{0};
  auto next = [&]() -> int64_t {
    const int64_t t = counter.fetch_add(1, std::memory_order_relaxed);
    return t < count ? t : -1;
  };
  if (work < kMinParallelWork || count <= 1) {
    body(next);
    return;
  }
  at::parallel_for(0, count, 1, [&](int64_t, int64_t) { body(next); });
}

}  // namespace pyflowops
