// Executing one run against a study database (runner.h): claim the row, resume from the last
// saved state, stream checkpoints and states into the store, record the result or the failure.
// Deliberately not: choosing runs (sweep.cpp), the training itself (experiment/train.h).
#include "sweep/runner.h"

#include <unistd.h>

#include <atomic>
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

std::vector<ExecutedRun> execute_ensemble(
    const std::vector<RunConfig>& cfgs, std::vector<TrainHooks> hooks,
    const std::function<void(size_t, const Checkpoint&)>& on_checkpoint,
    const std::function<void(size_t, int64_t, double, const std::string&)>& on_state) {
  require(!cfgs.empty() && hooks.size() == cfgs.size(), "execute_ensemble: one TrainHooks per member");
  const size_t K = cfgs.size();
  const Dataset& data = cached_dataset(cfgs.front());
  std::vector<int64_t> last_step(K, 0);
  std::vector<double> last_t(K, 0.0);
  bool stop_asked = false;
  for (size_t k = 0; k < K; ++k) {
    TrainHooks& h = hooks[k];
    h.on_checkpoint = [&, k, user = h.on_checkpoint](const Checkpoint& c) {
      last_step[k] = c.step;
      last_t[k] = c.t;
      if (on_checkpoint) on_checkpoint(k, c);
      if (user) user(c);
    };
    // The state's step and t: those of the latest checkpoint (the trainer re-emits everything after).
    h.on_state = [&, k, user = h.on_state](const std::string& blob) {
      if (on_state) on_state(k, last_step[k], last_t[k], blob);
      if (user) user(blob);
    };
    h.should_stop = [&, user = h.should_stop]() {
      if (user && user()) stop_asked = true;
      return stop_asked;
    };
  }
  std::vector<RunResult> results = train_ensemble(cfgs, data, hooks);
  std::vector<ExecutedRun> out(K);
  for (size_t k = 0; k < K; ++k) {
    out[k].result = std::move(results[k]);
    out[k].y_test = data.y_test;
    out[k].interrupted = stop_asked && out[k].result.status == "stopped";
  }
  return out;
}

ExecutedRun execute_run(const RunConfig& cfg, TrainHooks hooks,
                        const std::function<void(const Checkpoint&)>& on_checkpoint,
                        const std::function<void(int64_t, double, const std::string&)>& on_state) {
  return std::move(execute_ensemble(
      {cfg}, {std::move(hooks)}, [&](size_t, const Checkpoint& c) { if (on_checkpoint) on_checkpoint(c); },
      [&](size_t, int64_t step, double t, const std::string& blob) { if (on_state) on_state(step, t, blob); })[0]);
}

namespace {

// Refreshes runs.heartbeat_at of the runs being trained every 30 s on its own connection (a long
// kernel measurement emits no checkpoint for minutes).
class HeartbeatThread {
 public:
  HeartbeatThread(const std::string& path, std::vector<int64_t> ids) {
    th_ = std::thread([this, path, ids] {
      std::unique_lock<std::mutex> lock(m_);
      while (!cv_.wait_for(lock, std::chrono::seconds(30), [this] { return done_; })) {
        try {
          Store s(path, StoreOptions{false, false, 5.0});
          for (int64_t id : ids) s.heartbeat(id);
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

std::vector<StoredRunOutcome> run_claimed_ensemble(Store& store, const std::vector<int64_t>& ids,
                                                   const std::vector<RunConfig>& cfgs, bool resume,
                                                   const TrainHooks& hooks) {
  require(!ids.empty() && ids.size() == cfgs.size(), "run_claimed_ensemble: one config per run id");
  const size_t K = ids.size();
  std::vector<StoredRunOutcome> out(K);
  std::vector<TrainHooks> member_hooks(K, hooks);
  for (size_t k = 0; k < K; ++k) {
    const int64_t id = ids[k];
    out[k].run_id = id;
    std::optional<StoredState> state;
    if (resume) state = store.load_state(id);
    TrainHooks& h = member_hooks[k];
    if (state) {
      h.resume_state = state->blob;
      store.drop_checkpoints_after(id, schedule_floor(state->step));
      out[k].resumed = true;
    } else {
      h.resume_state.clear();
      store.drop_checkpoints_after(id, -1);  // a fresh start re-emits every checkpoint
    }
    h.progress = hooks.progress && K == 1;
  }
  HeartbeatThread beat(store.path(), ids);
  std::vector<ExecutedRun> ran;
  try {
    ran = execute_ensemble(
        cfgs, member_hooks, [&](size_t k, const Checkpoint& c) { store.add_checkpoint(ids[k], c); },
        [&](size_t k, int64_t step, double t, const std::string& blob) { store.save_state(ids[k], step, t, blob); });
  } catch (const std::exception& e) {
    for (int64_t id : ids) {
      try {
        store.fail(id, e.what());
      } catch (...) {
        // The database itself is failing (e.g. disk full): the original error matters more.
      }
    }
    throw;
  }
  for (size_t k = 0; k < K; ++k) {
    out[k].result = std::move(ran[k].result);
    const RunResult& r = out[k].result;
    if (ran[k].interrupted) {
      store.release(ids[k]);  // interrupted: back to planned, resumable from its state
    } else {
      store.finish(ids[k], r.status, r.message, r.summary(), r.test_f_delta, r.test_f0, ran[k].y_test, r.kernel);
    }
  }
  return out;
}

StoredRunOutcome run_claimed(Store& store, int64_t id, const RunConfig& cfg, bool resume, TrainHooks hooks) {
  return run_claimed_ensemble(store, {id}, {cfg}, resume, hooks).at(0);
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
