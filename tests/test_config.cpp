// Run options: parsing, defaults of the protocol, validation, canonical JSON, CLI exit codes.
#include <gtest/gtest.h>

#include "common/error.h"
#include "common/md5.h"
#include "common/options.h"
#include "experiment/config.h"
#include "testing.h"

using namespace lf;

static RunConfig parse(std::vector<std::string> args) {
  RunConfig c;
  OptionParser p("test", "test");
  add_run_options(p, c);
  p.parse(args);
  finalize(c);
  return c;
}

TEST(Md5, KnownVectors) {
  EXPECT_EQ(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(md5_hex("The quick brown fox jumps over the lazy dog"), "9e107d9d372bb6826bd81d3542a419d6");
  EXPECT_EQ(md5_hex(std::string(1000, 'a')), "cabe45dcc9ae5b66ba86600cca6b8ba8");
}

TEST(Config, ProtocolDefaults) {
  RunConfig c = parse({});
  EXPECT_EQ(c.ptr, 5000);
  EXPECT_EQ(c.pte, 50000);
  EXPECT_EQ(c.pca, 10);  // fc default
  EXPECT_EQ(c.L, 5);
  EXPECT_EQ(c.h, 100);
  EXPECT_DOUBLE_EQ(c.mu(), 1000.0);
  EXPECT_EQ(c.kernel_points, 5000);
  EXPECT_EQ(c.act, "softplus");
  EXPECT_DOUBLE_EQ(c.softplus_beta, 5.0);
}

TEST(Config, SqrtHAlphaAndDynamics) {
  RunConfig c = parse({"--h", "64", "--sqrt-h-alpha", "1e3"});
  EXPECT_DOUBLE_EQ(c.alpha, 1e3 / 8.0);
  c = parse({"--tau", "10"});
  EXPECT_DOUBLE_EQ(c.tau, 10.0);
  c = parse({"--gradient-flow"});
  EXPECT_FALSE(c.uses_momentum());
  c = parse({"--arch=cnn"});
  EXPECT_EQ(c.pca, 0);
}

TEST(Config, BadInputIsUsageError) {
  EXPECT_THROW(parse({"--alpha", "0"}), UsageError);
  EXPECT_THROW(parse({"--alpha", "-1"}), UsageError);
  EXPECT_THROW(parse({"--h", "0"}), UsageError);
  EXPECT_THROW(parse({"--L", "0"}), UsageError);
  EXPECT_THROW(parse({"--act", "gelu"}), UsageError);
  EXPECT_THROW(parse({"--loss", "mse"}), UsageError);
  EXPECT_THROW(parse({"--dataset", "imagenet"}), UsageError);
  EXPECT_THROW(parse({"--no-such-option"}), UsageError);
  EXPECT_THROW(parse({"--h", "abc"}), UsageError);
  EXPECT_THROW(parse({"--h"}), UsageError);
}

TEST(Config, JsonRoundTripAndHash) {
  RunConfig c = parse({"--h", "64", "--L", "3", "--sqrt-h-alpha", "1e-2", "--seed-init", "7"});
  RunConfig d = config_from_json(config_to_json(c));
  finalize(d);
  EXPECT_EQ(config_to_json(c), config_to_json(d));
  EXPECT_EQ(config_hash(c), config_hash(d));
  RunConfig e = c;
  e.max_wall = 100;  // budgets do not change a run's identity
  EXPECT_EQ(config_hash(c), config_hash(e));
  e.seed_init = 8;
  EXPECT_NE(config_hash(c), config_hash(e));
}

TEST(Cli, UnknownCommandAndOptionExit2) {
  auto r = lft::run_cli({"no-such-command"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("unknown command"), std::string::npos);
}

TEST(Cli, VersionShowsOpenBlas) {
  auto r = lft::run_cli({"--version", "--json"});
  ASSERT_EQ(r.status, 0) << r.err;
  auto j = nlohmann::json::parse(lft::last_line(r.out));
  EXPECT_TRUE(j["blas_is_openblas"].get<bool>()) << j.dump();
}
