// Runs the flash kernels in the simulator on one attention configuration and measures their error
// against the fp64 reference with FlashAttention's rule: for every output,
//   max|kernel - ref64| <= 2 * max|naive_same_dtype - ref64| + atol,
// where the naive attention rounds Q K^T, P and O to the storage type as a framework's unfused
// bf16/fp16 attention does.
#pragma once

#include <strata/api/flash.hpp>
#include <strata/reference/attention.hpp>

#include "executor_memory.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

namespace kernel_test {

namespace ref = strata::reference;
namespace att = strata::attention;
namespace core = strata::core;

/// One configuration. Empty `lens_k` means lens_k = lens_q; `varlen` packs the sequences with
/// cu_seqlens (otherwise all lengths must be equal and the batch is fixed-length).
struct Case {
  std::vector<int> lens_q;
  std::vector<int> lens_k;
  int h = 2, h_k = 1, d = 64;
  bool causal = false;
  int window_left = -1;
  float scale = 0.f;  // 0: 1/sqrt(d)
  bool varlen = true;
  uint64_t seed = 1;
  double spread = 1.0;        // input magnitude (large values give logits of +-1e4)
  bool deterministic = true;  // backward: false runs the fast mode (atomic dQ)

  std::string describe() const {
    std::ostringstream s;
    s << "lens_q";
    for (int n : lens_q) s << ' ' << n;
    if (!lens_k.empty()) {
      s << " lens_k";
      for (int n : lens_k) s << ' ' << n;
    }
    s << " h " << h << '/' << h_k << " d " << d << (causal ? " causal" : "") << " window "
      << window_left << (varlen ? " varlen" : " fixed") << " seed " << seed
      << (deterministic ? "" : " fast");
    return s.str();
  }
};

/// Largest error of the kernel and of the naive same-dtype attention against fp64, per output.
/// FlashAttention's rule (FlashAttention-3's tests): the kernel's O error is at most twice the
/// naive one plus o_atol, twice the error of any arithmetic on the reference in the output
/// dtype, (out_ref + 0.3 - 0.3 - out_ref) rounded at each step: the slack of one rounding, which
/// a case of a few hundred outputs needs (there one output an ulp off can double the max error
/// the naive run happened to reach); LSE within twice the naive error.
struct Errors {
  double o_kernel = 0, o_naive = 0, lse_kernel = 0, lse_naive = 0;
  double o_atol = 0;
  bool lse_inf_mismatch = false;  // -inf where the reference is finite, or the reverse
  bool nan = false;
  std::string status;  // non-empty: the launch failed
  bool pass(double atol = 1e-5) const {
    // a non-finite naive error would make the bound vacuous: that is a failure of the case
    return status.empty() && !nan && !lse_inf_mismatch && std::isfinite(o_naive) &&
           std::isfinite(lse_naive) && o_kernel <= 2 * o_naive + std::max(atol, o_atol) &&
           lse_kernel <= 2 * lse_naive + atol;
  }
};

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 0x1234567ull) {}
  double normal() {
    auto u = [&] {
      s_ ^= s_ >> 12, s_ ^= s_ << 25, s_ ^= s_ >> 27;
      return (double((s_ * 0x2545F4914F6CDD1Dull) >> 11) + 0.5) * 0x1p-53;
    };
    const double u1 = u(), u2 = u();
    return std::sqrt(-2 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  uint64_t s_;
};

template <class T>
double round_to(double x) {
  return double(core::to_float(core::from_float<T>(float(x))));
}

/// The attention a framework computes without fusion in T: scaled S and P rounded to T, fp32
/// softmax, O accumulated in fp32 and rounded to T. LSE in fp32 from the rounded S.
template <class T>
void naive_attention(const ref::AttentionConfig& c, const ref::Tensor& q, const ref::Tensor& k,
                     const ref::Tensor& v, ref::Tensor& out, ref::Tensor& lse) {
  const int H = c.num_heads, d = c.head_dim, G = c.group_size();
  out = ref::Tensor({c.num_tokens_q(), H, d});
  lse = ref::Tensor({c.num_tokens_q(), H});
  for (int b = 0; b < c.num_sequences(); ++b) {
    const int64_t q0 = c.cu_seqlens_q[size_t(b)], k0 = c.cu_seqlens_k[size_t(b)];
    const int tq = int(c.cu_seqlens_q[size_t(b) + 1] - q0),
              tk = int(c.cu_seqlens_k[size_t(b) + 1] - k0);
    const att::Mask m{tq, tk, c.causal, c.window_left};
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < tq; ++i) {
        std::vector<float> s(size_t(tk), -INFINITY);
        float mx = -INFINITY;
        for (int j = 0; j < tk; ++j) {
          if (!m.connected(i, j)) continue;
          float dot = 0.f;
          for (int e = 0; e < d; ++e)
            dot += float(q.row(q0 + i, h)[e]) * float(k.row(k0 + j, h / G)[e]);
          s[size_t(j)] = float(round_to<T>(dot * float(c.scale())));  // scaled, then rounded
          mx = std::max(mx, s[size_t(j)]);
        }
        float l = 0.f;
        for (int j = 0; j < tk; ++j) l += mx == -INFINITY ? 0.f : std::exp(s[size_t(j)] - mx);
        lse.data[size_t((q0 + i) * H + h)] = l > 0 ? mx + std::log(l) : -INFINITY;
        for (int e = 0; e < d; ++e) {
          float acc = 0.f;
          for (int j = 0; j < tk; ++j) {
            if (s[size_t(j)] == -INFINITY) continue;
            acc += float(round_to<T>(std::exp(s[size_t(j)] - mx) / l)) *
                   float(v.row(k0 + j, h / G)[e]);
          }
          out.row(q0 + i, h)[e] = round_to<T>(acc);
        }
      }
  }
}

/// Random [n, heads, d] values rounded to T: the doubles (what the reference sees) and the storage.
template <class T>
void random_tensor(Rng& rng, int64_t n, int heads, int d, double spread, ref::Tensor& x,
                   Vec<T>& st) {
  x = ref::Tensor({n, heads, d});
  st.resize(size_t(n * heads * d));
  for (size_t i = 0; i < st.size(); ++i) {
    st[i] = core::from_float<T>(float(spread * rng.normal()));
    x.data[i] = double(core::to_float(st[i]));
  }
}

/// A case's inputs and buffers: the fp64 values the reference sees, their storage in T, output
/// buffers poisoned with NaN, and Params (forward and backward fields) pointing at them. Not
/// copyable: the Params hold pointers into the vectors.
template <class T>
struct Problem {
  ref::AttentionConfig c;
  ref::Tensor q, k, v, dout;
  Vec<T> qs, ks, vs, dos, o, dq, dk, dv;
  Vec<float> lse, dsum, dq_accum;
  Vec<int> cuq, cuk;
  att::FlashBwdParams p;
  int64_t nq = 0, nk = 0;

  Problem(const Case& cs, int d) {
    const int B = int(cs.lens_q.size());
    const std::vector<int>& lk = cs.lens_k.empty() ? cs.lens_q : cs.lens_k;
    c.num_heads = cs.h, c.num_kv_heads = cs.h_k, c.head_dim = d;
    c.causal = cs.causal, c.window_left = cs.window_left, c.softmax_scale = cs.scale;
    int max_q = 0, max_k = 0;
    for (int b = 0; b < B; ++b) {
      c.cu_seqlens_q.push_back(c.cu_seqlens_q.back() + cs.lens_q[size_t(b)]);
      c.cu_seqlens_k.push_back(c.cu_seqlens_k.back() + lk[size_t(b)]);
      max_q = std::max(max_q, cs.lens_q[size_t(b)]);
      max_k = std::max(max_k, lk[size_t(b)]);
    }
    nq = c.num_tokens_q(), nk = c.num_tokens_k();
    Rng rng(cs.seed);
    random_tensor(rng, nq, cs.h, d, cs.spread, q, qs);
    random_tensor(rng, nk, cs.h_k, d, cs.spread, k, ks);
    random_tensor(rng, nk, cs.h_k, d, 1.0, v, vs);
    random_tensor(rng, nq, cs.h, d, 1.0, dout, dos);
    const T nan = core::from_float<T>(NAN);
    o.assign(qs.size(), nan), dq.assign(qs.size(), nan);
    dk.assign(ks.size() + 8, nan), dv.assign(ks.size() + 8, nan);  // + 8: never a null pointer
    lse.assign(size_t(nq * cs.h) + 1, NAN), dsum.assign(size_t(nq * cs.h) + 1, NAN);
    cuq.assign(c.cu_seqlens_q.begin(), c.cu_seqlens_q.end());
    cuk.assign(c.cu_seqlens_k.begin(), c.cu_seqlens_k.end());
    p.q = qs.data(), p.k = ks.data(), p.v = vs.data(), p.o = o.data(), p.lse = lse.data();
    p.dout = dos.data(), p.dq = dq.data(), p.dk = dk.data(), p.dv = dv.data(), p.dsum = dsum.data();
    if (cs.varlen) {
      p.cu_seqlens_q = p.cu_seqlens_q_host = cuq.data();
      p.cu_seqlens_k = p.cu_seqlens_k_host = cuk.data();
    }
    p.dtype = std::is_same_v<T, __half> ? att::Dtype::kFp16 : att::Dtype::kBf16;
    p.b = B, p.h = cs.h, p.h_k = cs.h_k, p.d = d;
    p.seqlen_q = max_q, p.seqlen_k = max_k, p.total_q = int(nq), p.total_k = int(nk);
    p.q_row_stride = p.o_row_stride = p.do_row_stride = p.dq_row_stride = int64_t(cs.h) * d;
    p.q_head_stride = p.o_head_stride = p.do_head_stride = p.dq_head_stride = d;
    p.k_row_stride = p.v_row_stride = p.dk_row_stride = p.dv_row_stride = int64_t(cs.h_k) * d;
    p.k_head_stride = p.v_head_stride = p.dk_head_stride = p.dv_head_stride = d;
    p.softmax_scale = float(c.scale());
    p.is_causal = cs.causal;
    p.window_left = cs.window_left;
    p.deterministic = cs.deterministic;
    // what the API asks for on this device (the fast mode's accumulator; on an sm_90 one, the
    // sm_90 backward's slices in either mode), poisoned: the launches must zero it
    if (const size_t accum = strata::api::flash_bwd_dq_accum_bytes(p); accum > 0) {
      dq_accum.assign(accum / sizeof(float) + 1, NAN);
      p.dq_accum = dq_accum.data();
      p.dq_accum_bytes = accum;
    }
  }
  Problem(const Problem&) = delete;
  Problem& operator=(const Problem&) = delete;
};

/// Errors of the problem's O and LSE (as a kernel left them) against fp64, beside the naive
/// same-dtype attention's (FlashAttention's rule: Errors::pass).
template <class T>
Errors forward_errors(const Problem<T>& pr, const Case& cs, int D) {
  const ref::AttentionConfig& c = pr.c;
  const ref::Tensor &q = pr.q, &k = pr.k, &v = pr.v;
  const int64_t Nq = pr.nq;
  const Vec<T>& o = pr.o;
  const Vec<float>& lse = pr.lse;
  ref::Tensor out64, lse64, outn, lsen;
  ref::attention_forward(c, q, k, v, out64, lse64);
  naive_attention<T>(c, q, k, v, outn, lsen);
  Errors e;
  for (int64_t t = 0; t < Nq; ++t)
    for (int hh = 0; hh < cs.h; ++hh) {
      for (int i = 0; i < D; ++i) {
        const size_t x = size_t((t * cs.h + hh) * D + i);
        const double kv = double(core::to_float(o[x]));
        if (std::isnan(kv)) e.nan = true;
        e.o_kernel = std::max(e.o_kernel, std::fabs(kv - out64.data[x]));
        e.o_naive = std::max(e.o_naive, std::fabs(outn.data[x] - out64.data[x]));
        const auto round = [](double v) {
          return double(core::to_float(core::from_float<T>(float(v))));
        };
        const double ref = round(out64.data[x]);
        e.o_atol = std::max(e.o_atol, 2 * std::fabs(round(round(round(ref + 0.3) - 0.3) - ref)));
      }
      const double r = lse64.data[size_t(t * cs.h + hh)], n = lsen.data[size_t(t * cs.h + hh)];
      const double kl = lse[size_t(hh * Nq + t)];
      if (std::isnan(kl)) e.nan = true;
      if (std::isinf(r) || std::isinf(kl)) {
        if (r != kl) e.lse_inf_mismatch = true;
        continue;
      }
      e.lse_kernel = std::max(e.lse_kernel, std::fabs(kl - r));
      e.lse_naive = std::max(e.lse_naive, std::fabs(n - r));
    }
  return e;
}

template <class T, int D>
Errors run_forward(const Case& cs) {
  Problem<T> pr(cs, D);
  // through the public launcher: validation, then the (dtype, d) instantiation
  if (const auto st = strata::api::flash_fwd(pr.p); !st.ok()) {
    Errors e;
    e.status = st.message();
    return e;
  }
  if (std::string err = sync_device(); !err.empty()) {
    Errors e;
    e.status = err;
    return e;
  }
  return forward_errors(pr, cs, D);
}

using T_raw = uint16_t;

/// Errors of dQ, dK, dV against fp64, for the kernel and for the naive same-dtype backward.
/// atol: one unit roundoff of the storage type at the gradient's scale (max|ref|). The kernel's
/// D = rowsum(dO o O) reads O as stored (rounded to T, as FlashAttention's preprocess does); in
/// very short sequences, where the naive backward sums only a few rounded terms, that one rounding
/// of O can dominate dQ and dK (measured: a length-2 bf16 case at 1.19x the bare 2x rule).
struct BwdErrors {
  double kernel[3] = {0, 0, 0}, naive[3] = {0, 0, 0};  // dq, dk, dv
  double atol[3] = {1e-5, 1e-5, 1e-5};
  bool nan = false;
  std::string status;
  std::vector<T_raw> raw;  // dQ, dK, dV bits as stored, for determinism checks
  bool pass() const {
    if (!status.empty() || nan) return false;
    for (int i = 0; i < 3; ++i)
      if (!std::isfinite(naive[i]) || kernel[i] > 2 * naive[i] + atol[i]) return false;
    return true;
  }
  double worst_ratio() const {
    double r = 0;
    for (int i = 0; i < 3; ++i) r = std::max(r, kernel[i] / (2 * naive[i] + atol[i]));
    return r;
  }
};

/// The unfused backward a framework runs in T: P, dP, dS rounded to T, fp32 sums, gradients
/// rounded to T (its forward is naive_attention's).
template <class T>
void naive_backward(const ref::AttentionConfig& c, const ref::Tensor& q, const ref::Tensor& k,
                    const ref::Tensor& v, const ref::Tensor& dout, ref::Tensor& dq, ref::Tensor& dk,
                    ref::Tensor& dv) {
  const int H = c.num_heads, Hk = c.num_kv_heads, d = c.head_dim, G = c.group_size();
  dq = ref::Tensor({c.num_tokens_q(), H, d});
  dk = ref::Tensor({c.num_tokens_k(), Hk, d});
  dv = ref::Tensor({c.num_tokens_k(), Hk, d});
  const float scale = float(c.scale());
  for (int b = 0; b < c.num_sequences(); ++b) {
    const int64_t q0 = c.cu_seqlens_q[size_t(b)], k0 = c.cu_seqlens_k[size_t(b)];
    const int tq = int(c.cu_seqlens_q[size_t(b) + 1] - q0),
              tk = int(c.cu_seqlens_k[size_t(b) + 1] - k0);
    const att::Mask m{tq, tk, c.causal, c.window_left};
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < tq; ++i) {
        std::vector<float> s(size_t(tk), -INFINITY), pr(size_t(tk), 0.f), dp(size_t(tk), 0.f);
        float mx = -INFINITY;
        for (int j = 0; j < tk; ++j) {
          if (!m.connected(i, j)) continue;
          float dot = 0.f;
          for (int e = 0; e < d; ++e)
            dot += float(q.row(q0 + i, h)[e]) * float(k.row(k0 + j, h / G)[e]);
          s[size_t(j)] = float(round_to<T>(dot * scale));
          mx = std::max(mx, s[size_t(j)]);
        }
        float l = 0.f;
        for (int j = 0; j < tk; ++j)
          l += s[size_t(j)] == -INFINITY ? 0.f : std::exp(s[size_t(j)] - mx);
        float dsum = 0.f;
        for (int j = 0; j < tk; ++j) {
          if (s[size_t(j)] == -INFINITY) continue;
          pr[size_t(j)] = float(round_to<T>(std::exp(s[size_t(j)] - mx) / l));
          float dot = 0.f;
          for (int e = 0; e < d; ++e)
            dot += float(dout.row(q0 + i, h)[e]) * float(v.row(k0 + j, h / G)[e]);
          dp[size_t(j)] = float(round_to<T>(dot));
          dsum += pr[size_t(j)] * dp[size_t(j)];
        }
        for (int j = 0; j < tk; ++j) {
          if (s[size_t(j)] == -INFINITY) continue;
          const float ds = float(round_to<T>(pr[size_t(j)] * (dp[size_t(j)] - dsum)));
          for (int e = 0; e < d; ++e) {
            dq.row(q0 + i, h)[e] += double(ds * scale * float(k.row(k0 + j, h / G)[e]));
            dk.row(k0 + j, h / G)[e] += double(ds * scale * float(q.row(q0 + i, h)[e]));
            dv.row(k0 + j, h / G)[e] += double(pr[size_t(j)] * float(dout.row(q0 + i, h)[e]));
          }
        }
      }
  }
  for (ref::Tensor* t : {&dq, &dk, &dv})
    for (double& x : t->data) x = round_to<T>(x);
}

/// Forward (kernel, api::flash_fwd) then backward (`bwd(p)`, a launcher returning a Status);
/// errors of dQ, dK, dV.
template <class T, class Bwd>
BwdErrors backward_errors(Problem<T>& pr, Bwd&& bwd) {
  ref::Tensor out64, lse64, dq64, dk64, dv64, dqn, dkn, dvn;
  ref::attention_forward(pr.c, pr.q, pr.k, pr.v, out64, lse64);
  ref::attention_backward(pr.c, pr.q, pr.k, pr.v, out64, lse64, pr.dout, dq64, dk64, dv64);
  naive_backward<T>(pr.c, pr.q, pr.k, pr.v, pr.dout, dqn, dkn, dvn);
  const auto& p = pr.p;
  const Vec<T>&dq = pr.dq, &dk = pr.dk, &dv = pr.dv;

  BwdErrors e;
  if (const auto st = strata::api::flash_fwd(p); !st.ok()) {
    e.status = std::string("forward: ") + st.message();
    return e;
  }
  if (const auto st = bwd(p); !st.ok()) {
    e.status = std::string("backward: ") + st.message();
    return e;
  }
  if (e.status = sync_device(); !e.status.empty()) return e;
  const Vec<T>* got[3] = {&dq, &dk, &dv};
  const ref::Tensor* want[3] = {&dq64, &dk64, &dv64};
  const ref::Tensor* naive[3] = {&dqn, &dkn, &dvn};
  for (int g = 0; g < 3; ++g) {
    double mag = 0;
    for (double x : want[g]->data) mag = std::max(mag, std::fabs(x));
    e.atol[g] = double(core::kUnitRoundoff<T>) * mag + 1e-5;
  }
  for (int g = 0; g < 3; ++g)
    for (size_t x = 0; x < want[g]->data.size(); ++x) {
      T_raw bits;
      memcpy(&bits, &(*got[g])[x], 2);
      e.raw.push_back(bits);
      const double kv = double(core::to_float((*got[g])[x]));
      if (std::isnan(kv)) e.nan = true;
      e.kernel[g] = std::max(e.kernel[g], std::fabs(kv - want[g]->data[x]));
      e.naive[g] = std::max(e.naive[g], std::fabs(naive[g]->data[x] - want[g]->data[x]));
    }
  return e;
}

/// Forward then backward through the public API (api::flash_fwd, api::flash_bwd).
template <class T, int D>
BwdErrors run_backward(const Case& cs) {
  Problem<T> pr(cs, D);
  return backward_errors(pr,
                         [](const att::FlashBwdParams& p) { return strata::api::flash_bwd(p); });
}

/// A fixed-length batch of `batch` sequences of `len` tokens.
inline Case fixed_case(int len, int batch, int h, int h_k, int d, bool causal) {
  Case c;
  c.lens_q.assign(size_t(batch), len);
  c.h = h, c.h_k = h_k, c.d = d, c.causal = causal;
  c.varlen = false;
  return c;
}

/// A seeded random valid configuration: 1-3 sequences up to `max_len` tokens (varlen with empty
/// sequences and different key lengths, or fixed length), GQA ratio 1/2/4 over 1-2 KV heads, any
/// compiled head dim, causal or not, a window or not. `bf16` says which dtype to run.
inline Case random_case(Rng& rng, int max_len, uint64_t seed, bool& bf16) {
  auto pick = [&](int n) { return int(std::fabs(rng.normal()) * 1e6) % n; };
  Case c;
  const int batch = 1 + pick(3);
  c.varlen = pick(2) == 0;
  const int fixed_len = 1 + pick(max_len);
  for (int b = 0; b < batch; ++b) {
    c.lens_q.push_back(c.varlen ? pick(max_len) : fixed_len);
    if (c.varlen) c.lens_k.push_back(pick(4) == 0 ? pick(max_len) : c.lens_q.back());
  }
  const int ratios[] = {1, 2, 4}, dims[] = {64, 96, 128};
  c.h_k = 1 + pick(2);
  c.h = c.h_k * ratios[pick(3)];
  c.d = dims[pick(3)];
  c.causal = pick(2) == 0;
  c.window_left = pick(3) == 0 ? pick(40) : -1;
  c.seed = seed;
  bf16 = pick(2) == 0;
  return c;
}

/// Runs `F::template run<T, D>(c)` with the compiled head dim D of the case.
template <class T, class F>
auto with_head_dim(const Case& c, F f) {
  switch (c.d) {
    case 96:
      return f.template operator()<T, 96>(c);
    case 128:
      return f.template operator()<T, 128>(c);
    default:
      return f.template operator()<T, 64>(c);
  }
}

}  // namespace kernel_test
