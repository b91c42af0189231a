// Executing one run against a study database (runner.h): claim the row, resume from the last
// saved state, stream checkpoints and states into the store, record the result or the failure.
// Deliberately not: choosing runs (sweep.cpp), the training itself (experiment/train.h).
#include "sweep/runner.h"

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <thread>

#include "common/error.h"
#include "experiment/from_config.h"
#include "dynamics/momentum.h"
#include "store/store.h"

namespace lf {

double default_stale_seconds() {
  if (const char* e = std::getenv("LAZYFEAT_STALE_S"); e && *e) return std::atof(e);
  return 600.0;
}

namespace {

// The dataset of the previous run of this process, reused when the next run's data options are
// the same (a sweep's runs usually share one dataset; building it takes seconds: 70,000 images,
// interleaving, PCA).
const Dataset& cached_dataset(const RunConfig& cfg) {
  static std::string key;
  static std::unique_ptr<Dataset> data;
  nlohmann::json k = {{"dataset", cfg.dataset}, {"data_dir", cfg.data_dir}, {"ptr", cfg.ptr},
                      {"pte", cfg.pte}, {"pca", cfg.pca}, {"pca_train_only", cfg.pca_train_only},
                      {"seed_data", cfg.seed_data}, {"arch", cfg.arch}};
  if (!data || k.dump() != key) {
    data.reset();
    data = std::make_unique<Dataset>(load_dataset(cfg));
    key = k.dump();
  }
  return *data;
}

}  // namespace

ExecutedRun execute_run(const RunConfig& cfg, TrainHooks hooks,
                        const std::function<void(const Checkpoint&)>& on_checkpoint,
                        const std::function<void(int64_t, double, const std::string&)>& on_state) {
  ExecutedRun out;
  const Dataset& data = cached_dataset(cfg);
  out.y_test = data.y_test;
  int64_t last_step = 0;
  double last_t = 0;
  auto user_ckpt = hooks.on_checkpoint;
  auto user_state = hooks.on_state;
  auto user_stop = hooks.should_stop;
  hooks.on_checkpoint = [&](const Checkpoint& c) {
    last_step = c.step;
    last_t = c.t;
    if (on_checkpoint) on_checkpoint(c);
    if (user_ckpt) user_ckpt(c);
  };
  // The state's step and t: those of the latest checkpoint (the trainer re-emits everything after).
  hooks.on_state = [&](const std::string& blob) {
    if (on_state) on_state(last_step, last_t, blob);
    if (user_state) user_state(blob);
  };
  bool stop_asked = false;
  hooks.should_stop = [&]() {
    if (user_stop && user_stop()) stop_asked = true;
    return stop_asked;
  };
  out.result = train_run(cfg, data, hooks);
  out.interrupted = stop_asked && out.result.status == "stopped";
  return out;
}

namespace {

// Refreshes runs.heartbeat_at every 30 s on its own connection while a run trains (a long
// kernel measurement emits no checkpoint for minutes).
class HeartbeatThread {
 public:
  HeartbeatThread(const std::string& path, int64_t id) {
    th_ = std::thread([this, path, id] {
      std::unique_lock<std::mutex> lock(m_);
      while (!cv_.wait_for(lock, std::chrono::seconds(30), [this] { return done_; })) {
        try {
          Store s(path, StoreOptions{false, false, 5.0});
          s.heartbeat(id);
        } catch (...) {
          // A busy database: the next beat (or the next checkpoint) refreshes it.
        }
      }
    });
  }
  ~HeartbeatThread() {
    {
      std::lock_guard<std::mutex> lock(m_);
      done_ = true;
    }
    cv_.notify_all();
    th_.join();
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread th_;
};

}  // namespace

int64_t schedule_floor(int64_t step) {
  int64_t s = 0;
  for (int64_t next = next_checkpoint(s); next <= step; next = next_checkpoint(s)) s = next;
  return s;
}

StoredRunOutcome run_claimed(Store& store, int64_t id, const RunConfig& cfg, bool resume,
                             TrainHooks hooks) {
  StoredRunOutcome out;
  out.run_id = id;
  std::optional<StoredState> state;
  if (resume) state = store.load_state(id);
  if (state) {
    hooks.resume_state = state->blob;
    store.drop_checkpoints_after(id, schedule_floor(state->step));
    out.resumed = true;
  } else {
    hooks.resume_state.clear();
    store.drop_checkpoints_after(id, -1);  // a fresh start re-emits every checkpoint
  }
  HeartbeatThread beat(store.path(), id);
  ExecutedRun ex;
  try {
    ex = execute_run(
        cfg, hooks, [&](const Checkpoint& c) { store.add_checkpoint(id, c); },
        [&](int64_t step, double t, const std::string& blob) { store.save_state(id, step, t, blob); });
  } catch (const std::exception& e) {
    try {
      store.fail(id, e.what());
    } catch (...) {
      // The database itself is failing (e.g. disk full): the original error matters more.
    }
    throw;
  }
  out.result = std::move(ex.result);
  if (ex.interrupted) {
    store.release(id);
  } else {
    store.finish(id, out.result.status, out.result.message, out.result.summary(),
                 out.result.test_f_delta, out.result.test_f0, ex.y_test, out.result.kernel);
  }
  return out;
}

RunResult result_from_summary(const nlohmann::json& s) {
  RunResult r;
  auto num = [&](const char* k, double& f) {
    if (s.contains(k) && s[k].is_number()) f = s[k].get<double>();
  };
  if (s.contains("status") && s["status"].is_string()) r.status = s["status"];
  if (s.contains("message") && s["message"].is_string()) r.message = s["message"];
  if (s.contains("steps") && s["steps"].is_number()) r.steps = s["steps"].get<int64_t>();
  if (s.contains("rejected") && s["rejected"].is_number()) r.rejected = s["rejected"].get<int64_t>();
  num("t", r.t);
  num("t1", r.t1);
  num("t2", r.t2);
  num("train_loss", r.train_loss);
  num("train_err", r.train_err);
  num("test_err", r.test_err);
  num("weight_change", r.weight_change);
  num("output_norm", r.output_norm);
  num("f_norm", r.f_norm);
  num("kernel_change", r.kernel_change);
  num("wall_s", r.wall_s);
  num("steps_per_s", r.steps_per_s);
  if (s.contains("zdot") && s["zdot"].is_array())
    for (const auto& v : s["zdot"]) r.zdot.push_back(v.is_number() ? v.get<double>() : kNaN);
  if (s.contains("kernel")) r.kernel = s["kernel"];
  return r;
}

StoredRunOutcome run_in_store(const RunConfig& cfg, const std::string& db_path, bool resume,
                              TrainHooks hooks) {
  Store store(db_path);
  auto [id, created] = store.plan(cfg);
  (void)created;
  RunRow row = store.run(id);
  double stale = default_stale_seconds();
  if (row.status == "converged") {
    // protocol: a converged configuration is never run again; its stored result stands.
    StoredRunOutcome out;
    out.run_id = id;
    out.result = result_from_summary(row.summary);
    if (auto o = store.outputs(id)) {
      out.result.test_f_delta = o->f_delta;
      out.result.test_f0 = o->f0;
    }
    if (hooks.progress)
      std::cerr << "lazyfeat: run " << id << " already converged in " << db_path
                << "; returning its stored result\n";
    return out;
  }
  if (!store.claim(id, cfg, stale, /*rerun=*/true)) {
    row = store.run(id);
    throw UsageError("run " + std::to_string(id) + " of " + db_path + " is being run by pid " +
                     std::to_string(row.pid) + " on " + row.host + " (status " + row.status + ")");
  }
  return run_claimed(store, id, cfg, resume, std::move(hooks));
}

}  // namespace lf
