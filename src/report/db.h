// Read-only access to a study database (docs/schema.md, the schema version of store/store.h) for the report: the
// runs with their flat columns, a run's checkpoints, a run's test outputs, kernel rows.
// Several files read as one study (the blocks of the paper-scale study are one database each:
// study/README.md): the runs of all of them, the ids of each later file's runs offset past the
// largest id of the files before it (a file alone keeps its ids).
// Columns are looked up by name, so a database missing an optional column reads it as NULL.
// Deliberately not: writing (src/store/ owns the schema and all writes), analysis.
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "analysis/runs.h"

struct sqlite3;

namespace lf::report {

struct CheckpointRow {
  int64_t step = 0;
  double t = analysis::NaN, train_loss = analysis::NaN, test_err = analysis::NaN;
  double weight_change = analysis::NaN, output_norm = analysis::NaN, f_norm = analysis::NaN;
};

struct OutputRow {
  int64_t n = 0;
  at::Tensor f_delta;  // [n] float64, f - f0 (multiply by alpha for the model's output)
  at::Tensor f0;       // [n] float64
  at::Tensor y;        // [n] int8 in {-1, +1}
};

class StudyDb {
 public:
  // Opens the files read-only, as one study. Throws UsageError when there is none, when a file
  // is missing, is not a study database (no runs table) or has a newer schema than this build
  // reads.
  explicit StudyDb(const std::vector<std::string>& paths);
  explicit StudyDb(const std::string& path) : StudyDb(std::vector<std::string>{path}) {}
  ~StudyDb();
  StudyDb(const StudyDb&) = delete;
  StudyDb& operator=(const StudyDb&) = delete;

  std::vector<analysis::RunRecord> runs() const;                 // every file's, in file then id order
  std::vector<CheckpointRow> checkpoints(int64_t run_id) const;  // in step order
  // The `final` outputs of a run; false when the run has none (or the table is absent).
  bool outputs(int64_t run_id, OutputRow& out) const;

 private:
  struct File {
    sqlite3* db = nullptr;
    int64_t offset = 0, max_id = 0;  // its runs are ids offset + 1 ... offset + max_id here
  };
  void open(const std::string& path, File& f);
  const File& file_of(int64_t run_id) const;  // the file holding run_id (its id there: run_id - offset)
  std::vector<File> files_;
};

}  // namespace lf::report
