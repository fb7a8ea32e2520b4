// Faults that each sanitizer must report (tests/test_sanitizers.py): proof that a library built
// with its flags and loaded into a Python with its runtime preloaded reports what it finds.
#include <cstdlib>
#include <thread>

extern "C" int edgeq_canary_overflow(int n) {
  volatile char* p = static_cast<char*>(std::malloc(n));
  p[n] = 1;  // one past the end
  const int r = p[0];
  std::free(const_cast<char*>(p));
  return r;
}

// two threads write one int with no barrier between them, as threads of a block would that
// skip a __syncthreads
extern "C" int edgeq_canary_race() {
  int v = 0;
  std::thread other([&] { v = 1; });
  v = 2;
  other.join();
  return v;
}
