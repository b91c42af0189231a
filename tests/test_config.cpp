// Run options: parsing, defaults of the protocol, validation, canonical JSON, CLI exit codes.
#include <gtest/gtest.h>

#include <cmath>

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

// The width and the activation follow the architecture unless given: the wide ResNet's --h is its
// width factor, 10 by default (the paper's 28 x 10), and sqrt(h) alpha is taken at that width.
TEST(Config, ArchitectureDefaults) {
  const RunConfig cnn = parse({"--arch", "cnn"}), wrn = parse({"--arch", "wrn", "--sqrt-h-alpha", "2"});
  EXPECT_EQ(cnn.h, 100);
  EXPECT_EQ(cnn.act, "relu");
  EXPECT_EQ(wrn.h, 10);
  EXPECT_EQ(wrn.act, "relu");
  EXPECT_EQ(wrn.pca, 0);
  EXPECT_DOUBLE_EQ(wrn.alpha, 2.0 / std::sqrt(10.0));
  EXPECT_EQ(parse({"--arch", "wrn", "--h", "2"}).h, 2);
  EXPECT_EQ(config_hash(parse({"--arch", "wrn"})), config_hash(parse({"--arch", "wrn", "--h", "10"})));
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

// Each bad input names its own problem (the message is the contract, not just the exception type).
TEST(Config, BadInputIsUsageError) {
  auto message = [](std::vector<std::string> args) -> std::string {
    try {
      parse(args);
    } catch (const UsageError& e) {
      return e.what();
    }
    return "(accepted)";
  };
  EXPECT_EQ(message({"--alpha", "0"}), "--alpha must be a finite number > 0");
  EXPECT_EQ(message({"--alpha", "-1"}), "--alpha must be a finite number > 0");
  EXPECT_EQ(message({"--h", "0"}), "--h must be >= 1, got 0");
  EXPECT_EQ(message({"--L", "0"}), "--L must be >= 1, got 0");
  EXPECT_EQ(message({"--act", "gelu"}), "unknown activation 'gelu' (expected softplus, relu, tanh or swish)");
  EXPECT_EQ(message({"--loss", "mse"}), "unknown loss 'mse' (expected hinge, softhinge or qhinge)");
  EXPECT_EQ(message({"--dataset", "imagenet"}), "unknown dataset 'imagenet' (expected mnist, fashion or cifar10)");
  EXPECT_EQ(message({"--pca-solver", "svd"}), "unknown PCA solver 'svd' (expected dsyev or evd)");
  EXPECT_EQ(message({"--act-scale", "-1"}), "--act-scale must be a finite number >= 0 (0: normalised)");
  EXPECT_EQ(message({"--softplus-threshold", "-5"}), "--softplus-threshold must be a finite number >= 0 (0: none)");
  EXPECT_NE(message({"--no-such-option"}).find("no-such-option"), std::string::npos);
  EXPECT_NE(message({"--h", "abc"}).find("--h"), std::string::npos);
  EXPECT_NE(message({"--h"}).find("--h"), std::string::npos);
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
  // The replay options travel through the JSON (and so the database) and make another run.
  RunConfig r = parse({"--published-seed", "--act-scale", "1.40438", "--softplus-threshold", "20", "--pca-solver",
                       "evd", "--seed-init", "7", "--alpha", "0.00125"});
  RunConfig r2 = config_from_json(config_to_json(r));
  finalize(r2);
  EXPECT_EQ(config_to_json(r), config_to_json(r2));
  EXPECT_TRUE(r2.published_seed);
  EXPECT_EQ(r2.act_scale, 1.40438);
  EXPECT_EQ(r2.softplus_threshold, 20.0);
  EXPECT_EQ(r2.pca_solver, "evd");
  EXPECT_EQ(r2.weights_seed(), 7u + 1155803808368364093u);
  // A run recorded before the dsyev PCA existed (no pca_solver, softplus_scale): read back as
  // made, with linalg_eigh's PCA and its scale.
  nlohmann::json old = config_to_json(parse({}));
  old.erase("pca_solver");
  old.erase("act_scale");
  old["softplus_scale"] = 1.5;
  RunConfig o = config_from_json(old);
  EXPECT_EQ(o.pca_solver, "evd");
  EXPECT_EQ(o.act_scale, 1.5);
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
  // The kernels OpenBLAS chose for this CPU, and the choice OPENBLAS_CORETYPE forces (Prescott:
  // SSE3, which every x86-64 that Debian 12 runs on has).
  const std::string core = j["blas_core"].get<std::string>();
  EXPECT_EQ(core.rfind("OpenBLAS 0.", 0), 0u) << core;
  EXPECT_GT(core.size(), std::string("OpenBLAS 0.3.21 ").size()) << core;
  auto forced = lft::run_cli({"--version", "--json"}, {"OPENBLAS_CORETYPE=Prescott"});
  ASSERT_EQ(forced.status, 0) << forced.err;
  const std::string fc = nlohmann::json::parse(lft::last_line(forced.out))["blas_core"].get<std::string>();
  EXPECT_EQ(fc.substr(fc.rfind(' ') + 1), "Prescott") << fc;
  EXPECT_NE(forced.out.find("blas kernels OpenBLAS"), std::string::npos) << forced.out;
}
