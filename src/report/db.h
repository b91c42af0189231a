// Read-only access to a study database (docs/schema.md, the schema version of store/store.h) for the report: the
// runs with their flat columns, a run's checkpoints, a run's test outputs, kernel rows.
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
  // Opens path read-only. Throws UsageError when the file is missing, is not a study database
  // (no runs table) or has a newer schema than this build reads.
  explicit StudyDb(const std::string& path);
  ~StudyDb();
  StudyDb(const StudyDb&) = delete;
  StudyDb& operator=(const StudyDb&) = delete;

  int schema_version() const { return schema_version_; }
  std::vector<analysis::RunRecord> runs() const;
  std::vector<CheckpointRow> checkpoints(int64_t run_id) const;  // in step order
  // The `final` outputs of a run; false when the run has none (or the table is absent).
  bool outputs(int64_t run_id, OutputRow& out) const;
  bool has_table(const std::string& name) const;

 private:
  sqlite3* db_ = nullptr;
  int schema_version_ = 0;
};

}  // namespace lf::report
