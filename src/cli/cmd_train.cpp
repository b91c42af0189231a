// `lazyfeat train [run options] [--json] [--out FILE.json] [--db FILE] [--resume] [--state-every SEC] [--quiet]`:
// one run (experiment/train.h). --json prints RunResult::summary() as the last stdout line
// (cli-contract.md); --out writes the summary, the config, every checkpoint and the final test
// outputs as one JSON file; --db runs it inside a study database (sweep/runner.h).
// Exit status: 0 for converged and stopped runs (the status is in the JSON), 1 for a diverged run
// (its JSON is still printed and, with --db, recorded), 2 for bad usage or input.
// Deliberately not: the training itself, storage.
#include <fstream>
#include <iostream>

#include "cli/command.h"
#include "common/error.h"
#include "common/options.h"
#include "experiment/from_config.h"
#include "experiment/config.h"
#include "experiment/train.h"
#include "sweep/runner.h"

namespace lf::cli {
namespace {

nlohmann::json tensor_list(const at::Tensor& t) {
  nlohmann::json a = nlohmann::json::array();
  if (!t.defined()) return a;
  at::Tensor c = t.to(at::kCPU, at::kDouble).contiguous();
  const double* p = c.data_ptr<double>();
  for (int64_t i = 0; i < c.numel(); ++i) a.push_back(std::isfinite(p[i]) ? nlohmann::json(p[i]) : nlohmann::json());
  return a;
}

int cmd_train(const Args& args) {
  RunConfig cfg;
  bool json = false, resume = false, quiet = false, reference = false;
  std::string out, db;
  double state_every = 300;
  OptionParser p("lazyfeat train [run options] [--json] [--out FILE.json] [--db FILE [--resume]] [--quiet]",
                 "Trains one network as alpha (f(w,x) - f(w0,x)) with the paper's dynamics until every training "
                 "point is fitted (status converged), a budget runs out (stopped) or it diverges (NaN; exit status "
                 "1, the run and its JSON are still recorded).");
  add_run_options(p, cfg);
  p.flag("json", "print the summary as one JSON line on stdout", json);
  p.value("out", "FILE.json", "write the summary, checkpoints and final test outputs to FILE",
          [&](const std::string& v) { out = v; });
  p.value("db", "FILE", "run inside this study database (created if absent); adds run_id",
          [&](const std::string& v) { db = v; });
  p.flag("resume", "with --db: continue from the run's saved state", resume);
  p.value("state-every", "SEC", "with --db: save a resumable state every SEC seconds (default 300)",
          [&](const std::string& v) { state_every = parse_double("--state-every", v); });
  p.flag("quiet", "no progress on stderr", quiet);
  p.flag("reference", "use the plain LibTorch trainer even where the fused CPU float64 one applies", reference);
  auto pos = p.parse(args);
  require(pos.empty(), "train takes no positional arguments (got '" + (pos.empty() ? "" : pos[0]) + "')");
  require(!resume || !db.empty(), "--resume needs --db FILE (the saved states live in the database)");
  require(state_every > 0, "--state-every must be > 0 seconds");
  finalize(cfg);
  validate_train_config(cfg);

  TrainHooks hooks;
  hooks.progress = !quiet;
  hooks.reference = reference;
  hooks.state_every_s = state_every;
  RunResult res;
  int64_t run_id = -1;
  if (!db.empty()) {
    StoredRunOutcome o = run_in_store(cfg, db, resume, hooks);
    res = std::move(o.result);
    run_id = o.run_id;
  } else {
    Dataset data = load_dataset(cfg);
    res = train_run(cfg, data, hooks);
  }
  nlohmann::json summary = res.summary();
  if (run_id >= 0) summary["run_id"] = run_id;
  if (!out.empty()) {
    nlohmann::json all = {{"summary", summary}, {"config", config_to_json(cfg)}};
    all["checkpoints"] = nlohmann::json::array();
    for (const auto& c : res.checkpoints) all["checkpoints"].push_back(c.to_json());
    all["test_f_delta"] = tensor_list(res.test_f_delta);
    all["test_f0"] = tensor_list(res.test_f0);
    std::ofstream os(out);
    require(bool(os), "cannot write --out file '" + out + "'");
    os << all.dump() << "\n";
    require(bool(os), "cannot write --out file '" + out + "'");
  }
  if (json) print_json_line(summary.dump());
  else
    std::cout << res.status << ": " << res.steps << " steps, t " << res.t << ", train loss " << res.train_loss
              << ", test error " << res.test_err << ", " << res.wall_s << " s\n";
  if (res.status == "diverged") {
    std::cerr << "lazyfeat: failure: the run diverged: " << res.message << "\n";
    return 1;
  }
  return 0;
}

Command reg{"train", "train one network (one run of the study)", cmd_train};

}  // namespace
}  // namespace lf::cli
