// Memory hints for large CPU outputs (corr, gradreg).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace pyflowops {

// A large freshly allocated output costs mostly first-touch page faults, one per
// 4 KB (about 5 us each on some VMs: 40 ms for 32 MB). On Linux, ask for
// transparent huge pages (a hint, as torch's own THP_MEM_ALLOC_ENABLE does): one
// fault per 2 MB, 3-4x faster to fill. Only whole huge pages inside t are advised.
inline void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t end = begin + t.nbytes();
  const uintptr_t a = (begin + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t e = end & ~(kHuge - 1);
  if (t.nbytes() >= 4 * kHuge && e > a) {
    (void)madvise(reinterpret_cast<void*>(a), e - a, MADV_HUGEPAGE);  // failure is harmless
  }
#else
  (void)t;
#endif
}

}  // namespace pyflowops
