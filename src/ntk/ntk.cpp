// The structured empirical NTK (see ntk.h) for the FC network and the CNN, and the dispatch
// between the structured and Jacobian methods. The Jacobian method is in ntk/jacobian.cpp, the
// wide ResNet's structured kernel in ntk/ntk_wrn.cpp.
//
// Cost of the structured method for n1 x n2 points (N distinct points), FC with L hidden layers
// of width h, input dimension d (protocol section 2):
//   features: one forward and one hand-written backward pass, ~ 4 N h (d + (L-1) h) flops,
//             memory (2L + 1) N h doubles (Z and Delta of every layer);
//   Gram:     per tile pair (I, J) and layer, two products D_I D_J^T and Z_I Z_J^T:
//             2 |I| |J| (2 L h + d) flops in all, halved for a symmetric Gram (lower tiles only);
//   memory:   the result plus three tile buffers of |I| |J| doubles.
#include "ntk/ntk.h"

#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "common/error.h"
#include "ntk/structured.h"

namespace lf {

NtkMethod ntk_method_from_name(const std::string& name) {
  if (name == "structured") return NtkMethod::Structured;
  if (name == "jacobian") return NtkMethod::Jacobian;
  throw UsageError("unknown NTK method '" + name + "' (expected structured or jacobian)");
}

std::string ntk_method_name(NtkMethod m) { return m == NtkMethod::Structured ? "structured" : "jacobian"; }

std::string Net::arch() const {
  static const char* names[] = {"fc", "cnn", "wrn"};
  return names[params.index()];
}

at::Tensor Net::forward(const at::Tensor& x) const {
  if (is_fc()) return fc_forward_reference(std::get<FCParams>(params), x, act);
  if (auto* w = std::get_if<WRNParams>(&params)) return wrn_forward_reference(*w, x, act);
  return cnn_forward_reference(std::get<CNNParams>(params), x, act);
}

std::vector<at::Tensor> Net::flat() const {
  return std::visit([](const auto& p) { return p.flat(); }, params);
}

Net Net::to(at::TensorOptions opts) const {
  return std::visit([&](const auto& p) { return Net{p.to(opts), act}; }, params);
}

int64_t Net::num_params() const {
  int64_t n = 0;
  for (auto& t : flat()) n += t.numel();
  return n;
}

namespace {

// The tiling driver: out[I, J] = tile(I, J) over tiles of T points; for a symmetric Gram only
// the tiles on and below the diagonal are computed and mirrored (diagonal tiles symmetrised).
template <class TileFn>
at::Tensor tiled_gram(int64_t n1, int64_t n2, bool symmetric, int64_t T, at::TensorOptions o, TileFn tile) {
  at::Tensor out = at::empty({n1, n2}, o);
  for (int64_t i0 = 0; i0 < n1; i0 += T) {
    const int64_t ti = std::min(T, n1 - i0);
    const int64_t j_end = symmetric ? i0 + 1 : n2;
    for (int64_t j0 = 0; j0 < j_end; j0 += T) {
      const int64_t tj = std::min(T, n2 - j0);
      at::Tensor t = tile(i0, ti, j0, tj);  // [ti, tj]
      if (symmetric && i0 == j0) t = (t + t.t()) * 0.5;
      out.narrow(0, i0, ti).narrow(1, j0, tj).copy_(t);
      if (symmetric && i0 != j0) out.narrow(0, j0, tj).narrow(1, i0, ti).copy_(t.t());
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// FC. Layer l = 0..L has input z_{l-1} (z_{-1} = x) and pre-activation a_l; Delta_l = df/da_l.
//   Theta = sum_{l<L} (D_l D_l^T) o (Zh_l Zh_l^T + 1)  +  Zh_L Zh_L^T + 1
// with Zh_l = z_{l-1} / sqrt(fan_in_l) and Delta_L = 1 (the output layer is linear).
struct FCFeatures {
  std::vector<at::Tensor> Z;  // Z[l] = z_{l-1} / sqrt(fan_in_l)   [(K,) n, fan_in_l], l = 0..L
  std::vector<at::Tensor> D;  // D[l] = df/da_l                    [(K,) n, h],        l = 0..L-1
};

// The features of one network (W[l] [h, fan_in]) or of K networks of one shape at once (W[l]
// [K, h, fan_in], b[l] [K, h]: then every tensor has a leading K), on the same points x [n, d].
FCFeatures fc_features(const FCParams& p, const Activation& act, const at::Tensor& x) {
  c10::NoGradGuard no_grad;
  const int64_t L = p.L();
  FCFeatures F;
  std::vector<at::Tensor> dphi;  // phi'(a_l) [(K,) n, h]
  at::Tensor z = x;
  for (int64_t l = 0; l < L; ++l) {
    at::Tensor zh = z / std::sqrt(double(p.W[l].size(-1)));
    F.Z.push_back(zh);
    at::Tensor a = p.W[l].dim() == 2 ? at::addmm(p.b[l], zh, p.W[l].t())  // [n, h]
                                     : at::matmul(zh, p.W[l].transpose(1, 2)).add_(p.b[l].unsqueeze(1));  // [K, n, h]
    dphi.push_back(act.derivative(a));
    z = act(a);
  }
  const double h = double(p.W[L].size(-1));
  F.Z.push_back(z / std::sqrt(h));
  F.D.resize(L);
  // Backward of sum f by hand: df/dz_L = W_L / sqrt(h); Delta_{l-1} = (Delta_l W_l / sqrt(fan_in_l)) o phi'(a_{l-1}).
  F.D[L - 1] = dphi[L - 1] * (p.W[L] / std::sqrt(h));  // [(K,) n, h] * [(K,) 1, h]
  for (int64_t l = L - 1; l >= 1; --l)
    F.D[l - 1] = at::matmul(F.D[l], p.W[l]).mul_(1.0 / std::sqrt(double(p.W[l].size(-1)))).mul_(dphi[l - 1]);
  return F;
}

// The whole Gram with the L hidden layers' products stacked: two batched products over
// [(K,) L, n1, h] x [(K,) L, h, n2] instead of 2 L small ones (on a GPU one launch with L times
// the thread blocks: the small products alone leave most of it idle). No symmetric saving.
// Memory: two [(K,) L, n1, n2] buffers. Flops 2 n1 n2 (2 L h + d) (per member).
at::Tensor fc_gram_stacked(const FCFeatures& A, const FCFeatures& B, double& flops) {
  const int64_t L = int64_t(A.D.size());
  const at::Tensor DA = at::stack(A.D, -3), DB = at::stack(B.D, -3);  // [(K,) L, n, h]
  const std::vector<at::Tensor> za(A.Z.begin() + 1, A.Z.end()), zb(B.Z.begin() + 1, B.Z.end());
  const at::Tensor GD = at::matmul(DA, DB.transpose(-1, -2));                            // [(K,) L, n1, n2]
  const at::Tensor GZ = at::matmul(at::stack(za, -3), at::stack(zb, -3).transpose(-1, -2));  // Z_1..Z_L
  const int64_t n1 = DA.size(-2), n2 = DB.size(-2), h = DA.size(-1), d = A.Z[0].size(-1);
  // Output layer (Delta_L = 1): Zh_L Zh_L^T + 1; layer 0: (D_0 D_0^T) o (Zh_0 Zh_0^T + 1).
  at::Tensor acc = GZ.select(-3, L - 1) + 1.0;
  acc.addcmul_(GD.select(-3, 0), at::matmul(A.Z[0], B.Z[0].transpose(-1, -2)).add_(1.0));
  if (L > 1) acc.add_((GD.narrow(-3, 1, L - 1) * (GZ.narrow(-3, 0, L - 1) + 1.0)).sum(-3));
  const double K = DA.dim() == 4 ? double(DA.size(0)) : 1.0;
  flops += K * (2.0 * n1 * n2 * double(2 * L * h + d) + 4.0 * L * n1 * n2);
  return acc;
}

at::Tensor fc_structured(const FCParams& p, const Activation& act, const at::Tensor& x1, const at::Tensor* x2,
                         const NtkOptions& opt) {
  const bool sym = (x2 == nullptr);
  FCFeatures A = fc_features(p, act, x1);
  FCFeatures B = sym ? FCFeatures{} : fc_features(p, act, *x2);
  const FCFeatures& Bf = sym ? A : B;
  const int64_t n1 = x1.size(0), n2 = sym ? n1 : x2->size(0);
  const int64_t L = p.L();
  if (opt.stack_layers.value_or(false)) {
    double flops = 0;
    at::Tensor out = fc_gram_stacked(A, Bf, flops);
    if (sym) out = (out + out.t()) * 0.5;
    if (opt.flops) *opt.flops = flops;
    if (opt.plan) *opt.plan = "fc structured: the layers' Grams stacked (one batched product each)";
    return out;
  }
  // Tiles: on the CPU 256 (measured: it beats 512-2000 at h=400: fewer FLOPs, same rate); on a
  // GPU the whole Gram as one tile where the budget allows (small tiles are launch-bound there).
  int64_t T = opt.tile > 0 ? opt.tile : x1.is_cuda() ? std::max(n1, n2) : 256;
  // Keep the three tile buffers within the memory budget.
  while (T > 64 && 3.0 * 8.0 * double(T) * double(T) > opt.memory_budget) T /= 2;
  auto o = x1.options();
  at::Tensor GD = at::empty({T, T}, o), GZ = at::empty({T, T}, o);
  double flops = 0;
  auto tile = [&](int64_t i0, int64_t ti, int64_t j0, int64_t tj) {
    at::Tensor acc = at::empty({ti, tj}, o);
    at::Tensor gd = GD.narrow(0, 0, ti).narrow(1, 0, tj), gz = GZ.narrow(0, 0, ti).narrow(1, 0, tj);
    // Output layer: Delta_L = 1, so its weights give Zh_L Zh_L^T and its bias 1.
    at::mm_out(acc, A.Z[L].narrow(0, i0, ti), Bf.Z[L].narrow(0, j0, tj).t());
    acc.add_(1.0);
    flops += 2.0 * ti * tj * double(A.Z[L].size(1)) + ti * tj;
    for (int64_t l = 0; l < L; ++l) {
      at::mm_out(gd, A.D[l].narrow(0, i0, ti), Bf.D[l].narrow(0, j0, tj).t());
      at::mm_out(gz, A.Z[l].narrow(0, i0, ti), Bf.Z[l].narrow(0, j0, tj).t());
      gz.add_(1.0);            // weights (Zh Zh^T) and bias (1)
      acc.addcmul_(gd, gz);    // (D D^T) o (Zh Zh^T + 1)
      flops += 2.0 * ti * tj * double(A.D[l].size(1) + A.Z[l].size(1)) + 3.0 * ti * tj;
    }
    return acc;
  };
  at::Tensor out = tiled_gram(n1, n2, sym, T, o, tile);
  if (opt.flops) *opt.flops = flops;
  if (opt.plan) {
    std::ostringstream s;
    s << "fc structured: tiles of " << T << (sym ? ", symmetric (lower tiles)" : "");
    *opt.plan = s.str();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// CNN. Convolution l has patches U_l(x) [P_l, K_l] (K_l = C_in 25, im2col of its input, divided
// by sqrt(K_l)) and deltas D_l(x) [P_l, h] (df/da_l at each output position). Its weight
// gradient is G_l(x) = D_l(x)^T U_l(x) [h, K_l], a sum over positions, so
//   <G_l(x), G_l(x')> = sum_{p,q} (D_l(x) D_l(x')^T)[p,q] (U_l(x) U_l(x')^T)[p,q]
// Two ways, per layer, whichever costs fewer flops (pairs = number of (x, x') computed):
//   contract:    2 pairs P^2 (h + K) + 2 pairs P^2             (memory: tiles of |I| P |J| P)
//   materialise: 2 N h P K (per-sample G) + 2 pairs h K         (memory: N h K doubles)
// The bias adds (sum_p D_l(x)) . (sum_p D_l(x')); the output layer adds Zh Zh^T + 1 with
// Zh = mean-pooled features / sqrt(h).
struct CNNFeatures {
  std::vector<at::Tensor> U;     // [n, P, K] patches / sqrt(K)   (contract layers)
  std::vector<at::Tensor> D;     // [n, P, h]                     (contract layers)
  std::vector<at::Tensor> G;     // [n, h K] per-sample weight gradients (materialised layers)
  std::vector<at::Tensor> Dsum;  // [n, h]
  at::Tensor Z;                  // [n, h] pooled / sqrt(h)
};

struct CNNPlan {
  std::vector<bool> materialise;  // per convolution
  std::vector<int64_t> P, K;
  double flops = 0;
};

CNNPlan cnn_plan(const CNNParams& p, int64_t H, int64_t W, double pairs, double N, const NtkOptions& opt) {
  CNNPlan plan;
  const double h = double(p.h());
  int64_t c_in = p.channels();
  for (int64_t l = 0; l < kCnnConvs; ++l) {
    H = (H + 2 * kCnnPadding - kCnnKernel) / kCnnStrides[l] + 1;
    W = (W + 2 * kCnnPadding - kCnnKernel) / kCnnStrides[l] + 1;
    const double P = double(H * W), K = double(c_in * kCnnKernel * kCnnKernel);
    const double contract = 2.0 * pairs * P * P * (h + K) + 2.0 * pairs * P * P;
    const double mat = 2.0 * N * h * P * K + 2.0 * pairs * h * K;
    const bool fits = 8.0 * N * h * K <= opt.memory_budget;
    const bool m = fits && mat <= contract;
    plan.materialise.push_back(m);
    plan.P.push_back(H * W);
    plan.K.push_back(int64_t(K));
    plan.flops += m ? 2.0 * N * h * P * K : 0.0;  // the per-sample gradients; the Grams are counted per tile
    c_in = p.h();
  }
  return plan;
}

CNNFeatures cnn_features(const CNNParams& p, const Activation& act, const at::Tensor& x, const CNNPlan& plan) {
  c10::NoGradGuard no_grad;
  CNNForward fw = cnn_forward_layers(p, x, act);
  const int64_t n = x.size(0), h = p.h();
  CNNFeatures F;
  F.Z = fw.pooled / std::sqrt(double(h));
  // Deltas by hand: df/dz_4 = W_4 / (sqrt(h) P_3) at every position (mean pooling), then back
  // through each convolution (convolution_backward with the scaled weight).
  std::vector<at::Tensor> D(kCnnConvs);
  const auto& a3 = fw.a[kCnnConvs - 1];
  const double P3 = double(a3.size(2) * a3.size(3));
  D[kCnnConvs - 1] = act.derivative(a3) * (p.W[kCnnConvs] / (std::sqrt(double(h)) * P3)).view({1, h, 1, 1});
  for (int64_t l = kCnnConvs - 1; l >= 1; --l) {
    const double K = double(p.W[l].size(1) * kCnnKernel * kCnnKernel);
    auto grads = at::convolution_backward(D[l], fw.z[l], p.W[l] / std::sqrt(K), c10::nullopt,
                                          {kCnnStrides[l], kCnnStrides[l]}, {kCnnPadding, kCnnPadding}, {1, 1},
                                          false, {0, 0}, 1, {true, false, false});
    D[l - 1] = std::get<0>(grads) * act.derivative(fw.a[l - 1]);  // [n, h, H_{l}, W_{l}]
  }
  F.U.resize(kCnnConvs);
  F.D.resize(kCnnConvs);
  F.G.resize(kCnnConvs);
  for (int64_t l = 0; l < kCnnConvs; ++l) {
    const int64_t P = plan.P[l], K = plan.K[l];
    at::Tensor Dl = D[l].reshape({n, h, P});                      // [n, h, P]
    F.Dsum.push_back(Dl.sum(2));                                   // [n, h]
    at::Tensor U = at::im2col(fw.z[l], {kCnnKernel, kCnnKernel}, {1, 1}, {kCnnPadding, kCnnPadding},
                              {kCnnStrides[l], kCnnStrides[l]}) / std::sqrt(double(K));  // [n, K, P]
    if (plan.materialise[l]) {
      F.G[l] = at::bmm(Dl, U.transpose(1, 2)).reshape({n, h * K});  // [n, h, P] x [n, P, K]
    } else {
      F.D[l] = Dl.transpose(1, 2).contiguous();  // [n, P, h]
      F.U[l] = U.transpose(1, 2).contiguous();   // [n, P, K]
    }
  }
  return F;
}

at::Tensor cnn_structured(const CNNParams& p, const Activation& act, const at::Tensor& x1, const at::Tensor* x2,
                          const NtkOptions& opt) {
  require(x1.dim() == 4, "the CNN takes images [n, C, H, W]");
  const bool sym = (x2 == nullptr);
  const int64_t n1 = x1.size(0), n2 = sym ? n1 : x2->size(0);
  const double pairs = sym ? 0.5 * double(n1) * double(n1 + 1) : double(n1) * double(n2);
  const double N = double(n1 + (sym ? 0 : n2));
  CNNPlan plan = cnn_plan(p, x1.size(2), x1.size(3), pairs, N, opt);
  CNNFeatures A = cnn_features(p, act, x1, plan);
  CNNFeatures B = sym ? CNNFeatures{} : cnn_features(p, act, *x2, plan);
  const CNNFeatures& Bf = sym ? A : B;
  const int64_t T = opt.tile > 0 ? opt.tile : 256;
  auto o = x1.options();
  double flops = plan.flops;
  auto tile = [&](int64_t i0, int64_t ti, int64_t j0, int64_t tj) {
    at::Tensor acc = at::mm(A.Z.narrow(0, i0, ti), Bf.Z.narrow(0, j0, tj).t()).add_(1.0);
    flops += 2.0 * ti * tj * double(A.Z.size(1));
    for (int64_t l = 0; l < kCnnConvs; ++l) {
      acc.addmm_(A.Dsum[l].narrow(0, i0, ti), Bf.Dsum[l].narrow(0, j0, tj).t());  // bias
      flops += 2.0 * ti * tj * double(A.Dsum[l].size(1));
      if (plan.materialise[l]) {
        acc.addmm_(A.G[l].narrow(0, i0, ti), Bf.G[l].narrow(0, j0, tj).t());
        flops += 2.0 * ti * tj * double(A.G[l].size(1));
        continue;
      }
      const int64_t P = plan.P[l], h = A.D[l].size(2), K = A.U[l].size(2);
      at::Tensor DJ = Bf.D[l].narrow(0, j0, tj).reshape({tj * P, h});
      at::Tensor UJ = Bf.U[l].narrow(0, j0, tj).reshape({tj * P, K});
      // Rows of I in chunks so that two [c P, tj P] products stay within the budget.
      const double per_row = 2.0 * 8.0 * double(P) * double(tj * P);
      const int64_t c = std::max<int64_t>(1, std::min<int64_t>(ti, int64_t(opt.memory_budget / per_row)));
      for (int64_t r0 = 0; r0 < ti; r0 += c) {
        const int64_t tc = std::min(c, ti - r0);
        at::Tensor gd = at::mm(A.D[l].narrow(0, i0 + r0, tc).reshape({tc * P, h}), DJ.t());  // [tc P, tj P]
        at::Tensor gu = at::mm(A.U[l].narrow(0, i0 + r0, tc).reshape({tc * P, K}), UJ.t());
        acc.narrow(0, r0, tc).add_(gd.mul_(gu).view({tc, P, tj, P}).sum({1, 3}));
        flops += 2.0 * tc * P * tj * P * double(h + K) + 2.0 * tc * P * tj * P;
      }
    }
    return acc;
  };
  at::Tensor out = tiled_gram(n1, n2, sym, T, o, tile);
  if (opt.flops) *opt.flops = flops;
  if (opt.plan) {
    std::ostringstream s;
    s << "cnn structured: tiles of " << T << (sym ? ", symmetric" : "") << "; layers:";
    for (int64_t l = 0; l < kCnnConvs; ++l) s << " " << (plan.materialise[l] ? "materialise" : "contract");
    *opt.plan = s.str();
  }
  return out;
}

// Parameters from the flat list of Net::flat (W_0, b_0, W_1, b_1, ...).
template <class P>
P unflat(const std::vector<at::Tensor>& ps) {
  P p;
  for (size_t i = 0; i < ps.size(); i += 2) { p.W.push_back(ps[i]); p.b.push_back(ps[i + 1]); }
  return p;
}

ForwardFn net_forward_fn(const Net& net) {
  const size_t kind = net.params.index();  // the order of Net::params: fc, cnn, wrn
  const Activation act = net.act;
  return [kind, act](const std::vector<at::Tensor>& ps, const at::Tensor& x) {
    if (kind == 0) return fc_forward_reference(unflat<FCParams>(ps), x, act);
    if (kind == 2) return wrn_forward_reference(unflat<WRNParams>(ps), x, act);
    return cnn_forward_reference(unflat<CNNParams>(ps), x, act);
  };
}

// FC: the forward with a leading point dimension on every parameter (the batched Jacobian rows).
ForwardFn net_per_sample_fn(const Net& net) {
  if (!net.is_fc()) return {};
  const Activation act = net.act;
  return [act](const std::vector<at::Tensor>& ps, const at::Tensor& x) {
    return fc_forward_per_sample(unflat<FCParams>(ps), x, act);
  };
}

at::Tensor dispatch(const Net& net, const at::Tensor& x1, const at::Tensor* x2, const NtkOptions& opt) {
  require(x1.scalar_type() == at::kDouble || x1.scalar_type() == at::kFloat, "NTK inputs must be floating point");
  if (opt.method == NtkMethod::Jacobian)
    return ntk_jacobian(net_forward_fn(net), net.flat(), x1, x2 ? *x2 : at::Tensor(), opt, net_per_sample_fn(net));
  if (net.is_fc()) return fc_structured(std::get<FCParams>(net.params), net.act, x1, x2, opt);
  if (auto* w = std::get_if<WRNParams>(&net.params)) return wrn_structured(*w, net.act, x1, x2, opt);
  return cnn_structured(std::get<CNNParams>(net.params), net.act, x1, x2, opt);
}

}  // namespace

at::Tensor ntk(const Net& net, const at::Tensor& x1, const at::Tensor& x2, const NtkOptions& opt) {
  return dispatch(net, x1, &x2, opt);
}

at::Tensor ntk(const Net& net, const at::Tensor& x, const NtkOptions& opt) { return dispatch(net, x, nullptr, opt); }

at::Tensor ntk_members(const std::vector<Net>& nets, const at::Tensor& x1, const at::Tensor& x2,
                       const NtkOptions& opt) {
  require(!nets.empty(), "ntk_members: no networks");
  const bool sym = !x2.defined();
  auto batchable = [&](const Net& n) {
    if (opt.method != NtkMethod::Structured || !n.is_fc() || !nets[0].is_fc()) return false;
    const auto &p = std::get<FCParams>(n.params), &q = std::get<FCParams>(nets[0].params);
    bool same = p.W.size() == q.W.size() && n.act.name() == nets[0].act.name() && n.act.beta == nets[0].act.beta &&
                n.act.scale == nets[0].act.scale && n.act.threshold == nets[0].act.threshold;
    for (size_t l = 0; same && l < p.W.size(); ++l) same = p.W[l].sizes() == q.W[l].sizes() && p.W[l].dim() == 2;
    return same;
  };
  const int64_t K = int64_t(nets.size()), n1 = x1.size(0), n2 = sym ? n1 : x2.size(0);
  auto one_by_one = [&] {
    std::vector<at::Tensor> g;
    for (const Net& n : nets) g.push_back(sym ? ntk(n, x1, opt) : ntk(n, x1, x2, opt));
    return at::stack(g);
  };
  // One network: its own default plan (tiles; stacking measured slower for one network).
  if (K == 1 || !std::all_of(nets.begin(), nets.end(), batchable)) return one_by_one();
  const FCParams& p0 = std::get<FCParams>(nets[0].params);
  const int64_t L = p0.L();
  const int64_t chunk = std::min<int64_t>(K, int64_t(opt.memory_budget / (2.0 * 8.0 * L * n1 * n2)));
  if (chunk < 1) return one_by_one();  // one member's stacked Grams exceed the budget: tiles
  at::Tensor out = at::empty({K, n1, n2}, x1.options());
  double flops = 0;
  for (int64_t k0 = 0; k0 < K; k0 += chunk) {
    const int64_t c = std::min(chunk, K - k0);
    FCParams P;  // the chunk's weights stacked: W[l] [c, h, fan_in], b[l] [c, h]
    for (size_t l = 0; l < p0.W.size(); ++l) {
      std::vector<at::Tensor> w, b;
      for (int64_t k = k0; k < k0 + c; ++k) {
        w.push_back(std::get<FCParams>(nets[k].params).W[l]);
        b.push_back(std::get<FCParams>(nets[k].params).b[l]);
      }
      P.W.push_back(at::stack(w));
      P.b.push_back(at::stack(b));
    }
    FCFeatures A = fc_features(P, nets[0].act, x1);
    FCFeatures B = sym ? FCFeatures{} : fc_features(P, nets[0].act, x2);
    at::Tensor g = fc_gram_stacked(A, sym ? A : B, flops);  // [c, n1, n2]
    if (sym) g = (g + g.transpose(1, 2)) * 0.5;
    out.narrow(0, k0, c).copy_(g);
  }
  if (opt.flops) *opt.flops = flops;
  if (opt.plan)
    *opt.plan = "fc structured, members batched: chunks of " + std::to_string(chunk) + " members, layers stacked";
  return out;
}

NtkBlocks ntk_blocks(const Net& net, const at::Tensor& a, const at::Tensor& b, const NtkOptions& opt) {
  const int64_t na = a.size(0), nb = b.size(0);
  at::Tensor K = dispatch(net, at::cat({a, b}, 0), nullptr, opt);  // [na + nb, na + nb]
  return NtkBlocks{K.narrow(0, 0, na).narrow(1, 0, na), K.narrow(0, na, nb).narrow(1, 0, na),
                   K.narrow(0, na, nb).narrow(1, na, nb)};
}

}  // namespace lf
