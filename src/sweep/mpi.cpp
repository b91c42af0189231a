// Sweeps under `mpirun -np K lazyfeat sweep ...` (sweep.h, run_sweep_mpi): rank 0 owns the
// study database, claims runs and hands them out, one run at a time or, with --ensemble E, up to
// E compatible runs at a time (sweep.h, GroupClaimer) that the rank trains as one ensemble; ranks
// 1..K-1 train and send back each run's checkpoints, states and result as CBOR-encoded JSON
// messages; rank 0 writes them.
// MPI is detected at run time (OMPI_COMM_WORLD_SIZE / PMI_SIZE), so one binary serves both.
// Deliberately not: a scheduler (runs are claimed in grid order), shared-filesystem writes.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <thread>

#include "common/error.h"
#include "store/store.h"
#include "sweep/runner.h"
#include "sweep/sweep.h"

#ifdef LAZYFEAT_WITH_MPI
#include <mpi.h>
#endif

namespace lf {

bool mpi_launched() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"}) {
    if (const char* v = std::getenv(var); v && std::atoi(v) > 1) return true;
  }
  return false;
}

#ifndef LAZYFEAT_WITH_MPI

SweepCounts run_sweep_mpi(const std::vector<RunConfig>&, const SweepOptions&, bool&) {
  throw UsageError("this lazyfeat was built without MPI; run the sweep without mpirun (--jobs N)");
}

#else

namespace {

using json = nlohmann::json;
constexpr int kTagUp = 1, kTagDown = 2;  // worker -> root, root -> worker

void send(int dest, int tag, const json& m) {
  std::vector<uint8_t> bytes = json::to_cbor(m);
  MPI_Send(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, dest, tag, MPI_COMM_WORLD);
}

json recv(int source, int tag, int* from = nullptr) {
  MPI_Status st;
  MPI_Probe(source, tag, MPI_COMM_WORLD, &st);
  int n = 0;
  MPI_Get_count(&st, MPI_BYTE, &n);
  std::vector<uint8_t> bytes(n);
  MPI_Recv(bytes.data(), n, MPI_BYTE, st.MPI_SOURCE, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  if (from) *from = st.MPI_SOURCE;
  return json::from_cbor(bytes);
}

json binary(const at::Tensor& t, at::ScalarType type) {
  std::vector<uint8_t> b;
  if (t.defined()) {
    at::Tensor c = t.detach().to(at::kCPU).to(type).contiguous().reshape({-1});
    const auto* p = static_cast<const uint8_t*>(c.data_ptr());
    b.assign(p, p + c.numel() * c.element_size());
  }
  return json::binary(std::move(b));
}

at::Tensor tensor(const json& j, at::ScalarType type) {
  const auto& b = j.get_binary();
  int64_t n = static_cast<int64_t>(b.size()) / at::elementSize(type);
  at::Tensor t = at::empty({n}, at::TensorOptions().dtype(type));
  if (n) std::memcpy(t.data_ptr(), b.data(), n * at::elementSize(type));
  return t;
}

json checkpoint_json(const Checkpoint& c) {
  return {{"step", c.step}, {"t", c.t}, {"dt", c.dt}, {"train_loss", c.train_loss},
          {"train_err", c.train_err}, {"test_err", c.test_err}, {"unsatisfied", c.unsatisfied},
          {"weight_change", c.weight_change}, {"w0_norm", c.w0_norm}, {"layer_change", c.layer_change},
          {"output_norm", c.output_norm}, {"f_norm", c.f_norm}, {"wall_s", c.wall_s}};
}

// NaN travels as null in JSON/CBOR.
double num(const json& j, const char* k) { return j.contains(k) && j[k].is_number() ? j[k].get<double>() : kNaN; }

Checkpoint checkpoint_from(const json& j) {
  Checkpoint c;
  c.step = j.value("step", int64_t{0});
  c.t = num(j, "t");
  c.dt = num(j, "dt");
  c.train_loss = num(j, "train_loss");
  c.train_err = num(j, "train_err");
  c.test_err = num(j, "test_err");
  c.unsatisfied = j.value("unsatisfied", int64_t{0});
  c.weight_change = num(j, "weight_change");
  c.w0_norm = num(j, "w0_norm");
  for (const auto& v : j["layer_change"]) c.layer_change.push_back(v.is_number() ? v.get<double>() : kNaN);
  c.output_norm = num(j, "output_norm");
  c.f_norm = num(j, "f_norm");
  c.wall_s = num(j, "wall_s");
  return c;
}

// Waits for rank 0's next message, polling; nullopt when a stop was requested (SIGTERM from
// mpirun, or the launcher died: watch_parent) and rank 0 has not answered within 10 s: rank 0
// is gone or stuck, and a blocking receive would never return.
std::optional<json> recv_from_root() {
  std::optional<std::chrono::steady_clock::time_point> stop_seen;
  for (;;) {
    int flag = 0;
    MPI_Status st;
    MPI_Iprobe(0, kTagDown, MPI_COMM_WORLD, &flag, &st);
    if (flag) return recv(0, kTagDown);
    if (g_stop_requested.load() || parent_gone()) {
      auto now = std::chrono::steady_clock::now();
      if (!stop_seen) stop_seen = now;
      if (now - *stop_seen > std::chrono::seconds(10)) return std::nullopt;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void worker(const SweepOptions& opts) {
  for (;;) {
    send(0, kTagUp, {{"type", "ready"}});
    std::optional<json> reply = recv_from_root();
    if (!reply) {
      std::cerr << "sweep: MPI rank stopping: rank 0 did not answer after the stop\n";
      return;
    }
    json m = std::move(*reply);
    if (m["type"] == "quit") return;
    // The runs of one ensemble (one run without --ensemble): {id, config, state, resumed} each.
    std::vector<int64_t> ids;
    for (const auto& r : m["runs"]) ids.push_back(r["id"].get<int64_t>());
    try {
      std::vector<RunConfig> cfgs;
      std::vector<TrainHooks> hooks;
      for (const auto& r : m["runs"]) {
        RunConfig cfg = config_from_json(r["config"]);
        if (cfg.data_dir.empty()) cfg.data_dir = default_data_dir();
        cfgs.push_back(cfg);
        TrainHooks h;
        h.state_every_s = opts.state_every_s;
        h.should_stop = [] { return g_stop_requested.load(); };
        h.progress = false;
        if (r["state"].is_binary()) {
          const auto& b = r["state"].get_binary();
          h.resume_state.assign(b.begin(), b.end());
        }
        hooks.push_back(std::move(h));
      }
      std::vector<ExecutedRun> ran = execute_ensemble(
          cfgs, hooks,
          [&](size_t k, const Checkpoint& c) {
            send(0, kTagUp, {{"type", "checkpoint"}, {"id", ids[k]}, {"c", checkpoint_json(c)}});
          },
          [&](size_t k, int64_t step, double t, const std::string& blob) {
            send(0, kTagUp, {{"type", "state"}, {"id", ids[k]}, {"step", step}, {"t", t},
                             {"blob", json::binary(std::vector<uint8_t>(blob.begin(), blob.end()))}});
          });
      for (size_t k = 0; k < ran.size(); ++k) {
        const RunResult& r = ran[k].result;
        send(0, kTagUp, {{"type", ran[k].interrupted ? "interrupted" : "result"}, {"id", ids[k]},
                         {"resumed", m["runs"][k].value("resumed", false)},
                         {"status", r.status}, {"message", r.message}, {"summary", r.summary()},
                         {"kernel", r.kernel}, {"f_delta", binary(r.test_f_delta, at::kDouble)},
                         {"f0", binary(r.test_f0, at::kDouble)}, {"y", binary(ran[k].y_test, at::kChar)}});
      }
    } catch (const std::exception& e) {
      for (int64_t id : ids) send(0, kTagUp, {{"type", "failed"}, {"id", id}, {"error", e.what()}});
    }
  }
}

SweepCounts root(const std::vector<RunConfig>& grid, const SweepOptions& opts, int size, bool& clean) {
  SweepCounts counts;
  std::vector<int64_t> ids = plan_sweep(grid, opts, counts);
  if (opts.progress)
    std::cerr << "sweep: " << counts.total << " configs in " << opts.db << " (" << counts.planned
              << " newly planned), " << size - 1 << " MPI worker ranks\n";
  Store store(opts.db);
  GroupClaimer claimer(store, opts.ensemble, opts.stale_s);
  std::map<int, std::vector<int64_t>> in_flight;  // rank -> the run ids it trains (an ensemble's)
  std::vector<int> idle;             // ranks waiting for a run while others hold the rest
  std::set<int64_t> failed_here, waited_on;
  std::vector<HeldRun> held;
  WaitingNote waiting;
  int active = size - 1;
  auto last_beat = std::chrono::steady_clock::now();
  auto last_poll = std::chrono::steady_clock::now();
  std::optional<std::chrono::steady_clock::time_point> stop_seen;

  auto hand_out = [&](int rank, const std::vector<int64_t>& group) {
    json runs = json::array();
    for (int64_t id : group) {
      RunRow row = store.run(id);
      json r = {{"id", id}, {"config", row.config}, {"state", nullptr}};
      if (auto s = store.load_state(id)) {
        r["state"] = json::binary(std::vector<uint8_t>(s->blob.begin(), s->blob.end()));
        store.drop_checkpoints_after(id, schedule_floor(s->step));
        r["resumed"] = true;
      } else {
        store.drop_checkpoints_after(id, -1);
      }
      runs.push_back(std::move(r));
      if (opts.progress)
        std::cerr << "sweep: rank " << rank << " starts run " << id
                  << (group.size() > 1 ? " in an ensemble of " + std::to_string(group.size()) : "") << "\n";
    }
    in_flight[rank] = group;
    send(rank, kTagDown, {{"type", "runs"}, {"runs", runs}});
  };
  // A run of `from`'s ensemble reported its end: it no longer counts as in flight.
  auto settle = [&](int from, int64_t id) {
    auto it = in_flight.find(from);
    if (it == in_flight.end()) return;
    it->second.erase(std::remove(it->second.begin(), it->second.end(), id), it->second.end());
    if (it->second.empty()) in_flight.erase(it);
  };
  auto quit = [&](int rank) {
    send(rank, kTagDown, {{"type", "quit"}});
    --active;
  };
  // A rank asking for work: a claimable run; else, while other live processes hold runs of the
  // grid, it waits (opts.wait_elsewhere) or quits; with nothing left anywhere, it quits.
  auto serve = [&](int rank) {
    if (g_stop_requested.load()) return quit(rank);
    std::vector<int64_t> todo;
    for (int64_t id : ids)
      if (!failed_here.count(id)) todo.push_back(id);
    while (auto id = store.claim_next(todo, opts.stale_s, opts.retry_failed)) {
      ClaimedGroup g = claimer.complete(*id, todo);  // --ensemble K: up to K runs
      if (!g.error.empty()) {  // an unreadable config: its group failed, try the next
        for (int64_t f : g.ids) {
          ++counts.failed;
          counts.failed_ids.push_back(f);
          failed_here.insert(f);
          todo.erase(std::remove(todo.begin(), todo.end(), f), todo.end());
        }
        std::cerr << "sweep: failed to start run " << *id << ": " << g.error << "\n";
        continue;
      }
      for (int64_t g_id : g.ids) waited_on.erase(g_id);
      return hand_out(rank, g.ids);
    }
    std::set<int64_t> ours;
    for (const auto& [r, group] : in_flight) ours.insert(group.begin(), group.end());
    held = runs_standing(todo, opts, ours).elsewhere;
    for (const auto& h : held) waited_on.insert(h.id);
    if (held.empty() || !opts.wait_elsewhere) return quit(rank);
    idle.push_back(rank);
    waiting.print(held, opts.progress);
  };

  while (active > 0) {
    int flag = 0;
    MPI_Status st;
    MPI_Iprobe(MPI_ANY_SOURCE, kTagUp, MPI_COMM_WORLD, &flag, &st);
    if (!flag) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      auto now = std::chrono::steady_clock::now();
      if (now - last_beat > std::chrono::seconds(30)) {
        for (const auto& [rank, group] : in_flight)
          for (int64_t id : group) store.heartbeat(id);
        last_beat = now;
      }
      if (g_stop_requested.load()) {
        for (int r : std::exchange(idle, {})) quit(r);
        if (!stop_seen) stop_seen = now;
        // Ranks that do not report within 15 s of the stop are dead or stuck: their runs go back
        // to planned (their last saved states stay) and this rank ends without them.
        if (now - *stop_seen > std::chrono::seconds(15) && !in_flight.empty()) {
          for (const auto& [rank, group] : in_flight)
            for (int64_t id : group) {
              store.release(id);
              ++counts.interrupted;
              std::cerr << "sweep: rank " << rank << " did not stop; run " << id << " put back to planned\n";
            }
          in_flight.clear();
          clean = false;
          break;
        }
      } else if (!idle.empty() && now - last_poll > std::chrono::duration<double>(opts.poll_s)) {
        last_poll = now;
        for (int r : std::exchange(idle, {})) serve(r);
      }
      continue;
    }
    int from = 0;
    json m = recv(st.MPI_SOURCE, kTagUp, &from);
    std::string type = m["type"];
    if (type == "ready") {
      serve(from);
    } else if (type == "checkpoint") {
      store.add_checkpoint(m["id"], checkpoint_from(m["c"]));
    } else if (type == "state") {
      const auto& b = m["blob"].get_binary();
      store.save_state(m["id"], m["step"], num(m, "t"), std::string(b.begin(), b.end()));
    } else if (type == "result") {
      int64_t id = m["id"];
      store.finish(id, m["status"], m["message"], m["summary"], tensor(m["f_delta"], at::kDouble),
                   tensor(m["f0"], at::kDouble), tensor(m["y"], at::kChar), m["kernel"]);
      ++counts.done;
      if (m.value("resumed", false)) ++counts.resumed;
      settle(from, id);
      if (opts.progress)
        std::cerr << "sweep: rank " << from << " " << m["status"].get<std::string>() << " run " << id
                  << (m.value("resumed", false) ? " resumed" : "")
                  << "  test_err " << m["summary"].value("test_err", json()).dump() << "\n";
    } else if (type == "interrupted") {
      store.release(m["id"]);
      ++counts.interrupted;
      settle(from, m["id"].get<int64_t>());
    } else if (type == "failed") {
      store.fail(m["id"], m["error"]);
      ++counts.failed;
      counts.failed_ids.push_back(m["id"].get<int64_t>());
      failed_here.insert(m["id"].get<int64_t>());
      settle(from, m["id"].get<int64_t>());
      std::cerr << "sweep: rank " << from << " failed run " << m["id"] << ": "
                << m["error"].get<std::string>() << "\n";
    }
  }
  std::vector<int64_t> todo;
  for (int64_t id : ids)
    if (!failed_here.count(id)) todo.push_back(id);
  held = g_stop_requested.load() || !opts.wait_elsewhere ? runs_standing(todo, opts, {}).elsewhere
                                                          : std::vector<HeldRun>{};
  settle_counts(counts, waited_on, held, opts);
  return counts;
}

}  // namespace

SweepCounts run_sweep_mpi(const std::vector<RunConfig>& grid, const SweepOptions& opts, bool& is_root) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) MPI_Init(nullptr, nullptr);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  is_root = rank == 0;
  SweepCounts counts;
  bool clean = true;
  try {
    if (size < 2) throw UsageError("an MPI sweep needs at least 2 ranks (rank 0 only writes the database)");
    if (rank == 0) counts = root(grid, opts, size, clean);
    else worker(opts);
  } catch (const std::exception& e) {
    // One rank failing (a locked database, a full disk) would leave the others waiting forever.
    std::cerr << "lazyfeat: error (MPI rank " << rank << "): " << e.what() << "\n";
    MPI_Abort(MPI_COMM_WORLD, dynamic_cast<const UsageError*>(&e) ? 2 : 1);
  }
  // MPI_Finalize waits for every rank (and for the launcher): not when the launcher is gone or a
  // rank did not stop; the database is consistent already.
  if (rank != 0 && (parent_gone() || g_stop_requested.load())) std::_Exit(130);
  if (clean && !parent_gone()) MPI_Finalize();
  return counts;
}

#endif

}  // namespace lf
