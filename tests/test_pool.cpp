// lazyfeat's thread pool (common/pool.h): every task runs once, on threads in [0, pool_threads());
// a region inside a task, and regions started at once from several threads, run on their caller
// and still run every task once; many regions in a row (the workers' spin and sleep) lose none.
// Deliberately not: speed (bench train-step), the kernels' numbers (test_fc, test_cnn).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "common/pool.h"

namespace {

// Runs a region of k tasks; returns how often each ran, and checks the thread indices.
std::vector<int> region(int64_t k) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(k));
  std::atomic<bool> bad_thread{false};
  lf::parallel_tasks(k, [&](int64_t i, int t) {
    if (t < 0 || t >= lf::pool_threads()) bad_thread = true;
    hits[static_cast<size_t>(i)].fetch_add(1);
  });
  EXPECT_FALSE(bad_thread);
  std::vector<int> out;
  for (auto& h : hits) out.push_back(h.load());
  return out;
}

}  // namespace

TEST(Pool, EveryTaskOnceInManyRegions) {
  EXPECT_GE(lf::pool_threads(), 1);
  for (int64_t k : {0, 1, 2, 3, 7, 64, 1000}) EXPECT_EQ(region(k), std::vector<int>(size_t(k), 1)) << k;
  for (int rep = 0; rep < 2000; ++rep) ASSERT_EQ(region(5), std::vector<int>(5, 1)) << rep;
  // After the workers went to sleep (they spin ~100 us), a region wakes them.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(region(100), std::vector<int>(100, 1));
}

TEST(Pool, TwoThreadsByDefaultBothAtWork) {
  ASSERT_EQ(lf::pool_threads(), 2) << "the default (LAZYFEAT_THREADS unset)";
  // Tasks that wait for each other: they finish only if two threads run them at once.
  std::atomic<int> arrived{0};
  std::atomic<bool> both{false};
  lf::parallel_tasks(2, [&](int64_t, int) {
    arrived.fetch_add(1);
    const auto t0 = std::chrono::steady_clock::now();
    while (arrived.load() < 2 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5)) std::this_thread::yield();
    if (arrived.load() == 2) both = true;
  });
  EXPECT_TRUE(both) << "two tasks never ran at the same time";
}

TEST(Pool, NestedAndConcurrentRegionsRunOnTheirCaller) {
  std::vector<std::atomic<int>> inner(64);
  lf::parallel_tasks(8, [&](int64_t i, int) {
    lf::parallel_tasks(8, [&](int64_t j, int t) {
      EXPECT_EQ(t, 0);  // on the thread that runs task i
      inner[static_cast<size_t>(i * 8 + j)].fetch_add(1);
    });
  });
  for (auto& h : inner) EXPECT_EQ(h.load(), 1);
  std::vector<std::thread> starters;
  std::vector<std::vector<int>> got(4);
  for (int s = 0; s < 4; ++s)
    starters.emplace_back([&, s] {
      for (int rep = 0; rep < 200; ++rep) {
        got[size_t(s)] = region(37);
        if (got[size_t(s)] != std::vector<int>(37, 1)) return;
      }
    });
  for (auto& t : starters) t.join();
  for (const auto& g : got) EXPECT_EQ(g, std::vector<int>(37, 1));
}
