/* Strata's C ABI: the kernels behind plain C structs, for bindings that cannot include C++
 * headers or must not depend on a C++ ABI (strata_torch loads it with ctypes, so one build works
 * with every torch that has torch.library.custom_op).
 *
 * One source, two executors: the same implementation is compiled by g++ against the CPU SIMT
 * simulator (libstrata_capi_sim.so: tensors in host memory, kernels run on the CPU) and by nvcc
 * (libstrata_capi_cuda.so: device memory, kernels launched on `stream`). Both export the same
 * symbols; load each with RTLD_LOCAL.
 *
 * Every call validates everything first and writes nothing when it fails: it returns a nonzero
 * strata::StatusCode and strata_capi_last_error() (per thread) names the argument. Argument names
 * in messages are those of the Python API (q, k, v, out, lse, dout, dq, ...).
 *
 * Layouts follow FlashAttention: q, k, v, out are [batch, seqlen, heads, head_dim] (fixed length)
 * or [total_tokens, heads, head_dim] with cu_seqlens (packed variable length); the last dimension
 * is contiguous, and strides are in elements. lse is fp32 [heads, total_q].
 */
#ifndef STRATA_CAPI_H_
#define STRATA_CAPI_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define STRATA_CAPI_EXPORT __declspec(dllexport)
#else
#define STRATA_CAPI_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** Bumped whenever a struct below changes; strata_torch refuses a library of another version. */
#define STRATA_CAPI_VERSION 5

/** Element types of StrataTensor::dtype. */
enum StrataDtype {
  STRATA_DTYPE_NONE = 0, /**< the tensor is not given */
  STRATA_DTYPE_BF16 = 1,
  STRATA_DTYPE_FP16 = 2,
  STRATA_DTYPE_FP32 = 3,
  STRATA_DTYPE_INT32 = 4,
  STRATA_DTYPE_UINT8 = 5,
  STRATA_DTYPE_INT64 = 6,
  STRATA_DTYPE_OTHER = 99 /**< a dtype Strata has no use for (always refused) */
};

/** A strided view of memory; dtype == STRATA_DTYPE_NONE means "not given" (data may be NULL
 *  when the tensor has no elements). At most 4 dimensions. */
typedef struct StrataTensor {
  void* data;
  int32_t dtype; /**< StrataDtype */
  int32_t ndim;
  int64_t shape[4];
  int64_t stride[4]; /**< in elements */
} StrataTensor;

/** One attention problem, forward and backward fields. */
typedef struct StrataAttention {
  StrataTensor q, k, v; /**< [b, s, h, d] / [b, s_k, h_k, d], or [total, h, d] when varlen */
  StrataTensor out;     /**< like q: written by the forward, read by the backward */
  StrataTensor lse;     /**< fp32 [h, total_q]: written by the forward, read by the backward */
  StrataTensor cu_seqlens_q, cu_seqlens_k; /**< int32 [b + 1], or not given: fixed length */
  /** Host copies of cu_seqlens_q / cu_seqlens_k for the nvcc build, which cannot read device
   *  memory: when given, the offsets are validated (start at 0, never decrease, end at the
   *  token count, no sequence longer than max_seqlen); without them a device varlen batch is
   *  trusted, as FlashAttention does. The simulator reads cu_seqlens itself and ignores these. */
  StrataTensor cu_seqlens_q_host, cu_seqlens_k_host;
  int32_t max_seqlen_q, max_seqlen_k; /**< varlen: the longest sequence of each side */
  float softmax_scale;                /**< > 0 and finite; usually 1/sqrt(d) */
  int32_t causal;                     /**< 0 or 1 */
  int32_t window_left;                /**< -1: unlimited */
  int32_t deterministic;              /**< backward: 1 bitwise reproducible, 0 fast */
  StrataTensor dout;                  /**< backward: dL/d(out), like q */
  StrataTensor dq, dk, dv;            /**< backward outputs, like q / k / v */
  StrataTensor workspace;             /**< backward: uint8, at least the op's *_workspace_bytes */
  void* stream;                       /**< cudaStream_t (ignored by the simulator) */
} StrataAttention;

/** ResFormer's value residual of a layer l >= 1: V' = lambda_self V + lambda_first V_0. */
typedef struct StrataValueResidual {
  StrataTensor v_first;       /**< V_0 as stored, like v */
  StrataTensor lambda_self;   /**< fp32, one element (scalar) or [h_k] (one per KV head) */
  StrataTensor lambda_first;  /**< fp32, like lambda_self */
  StrataTensor dv_first;      /**< backward: fp32 [total_k, h_k, d] contiguous, accumulated (+=) */
  StrataTensor dlambda_self;  /**< backward: fp32, lambda's shape (written) */
  StrataTensor dlambda_first; /**< backward: fp32, lambda's shape (written) */
} StrataValueResidual;

/** Gated Attention's output gate: out = Attention(q, k, v) * sigmoid(gate). */
typedef struct StrataGate {
  StrataTensor gate;  /**< like q (elementwise) or q without head_dim (headwise) */
  StrataTensor dgate; /**< backward: dL/d(gate), gate's shape (written) */
} StrataGate;

/** One ExoFormer stream P (q, k, v or g) of a layer. */
typedef struct StrataExoStream {
  StrataTensor p;                /**< the layer's projection P: like q (q, g) or k (k, v) */
  StrataTensor anchor;           /**< the stack's raw anchor projection anchor_P, like p */
  StrataTensor gamma_anchor;     /**< fp32 [d]: the anchor RMSNorm's gain */
  StrataTensor lambda1, lambda2; /**< fp32 [heads, d], [heads] or one value (all eight alike) */
  StrataTensor dp, danchor;      /**< backward: like p, written */
  StrataTensor dgamma_anchor, dlambda1, dlambda2; /**< backward: fp32, their input's shape */
} StrataExoStream;

/** ExoFormer's mix of one layer (SPEC §3): P~ = lambda1 s1 RMSNorm(anchor_P) + lambda2 s2 P,
 *  QK-norm and RoPE on q~ and k~; then Gated Attention with gate logits g~. The attention's q, k,
 *  v and the gate's `gate` are the mixed outputs (written by the forward, read by the
 *  backward); in the backward its dq, dk, dv and `dgate` are scratch (the attention's gradients,
 *  which the mix's backward reads). */
typedef struct StrataExo {
  StrataExoStream stream[4];           /**< q, k, v, g */
  StrataTensor gamma_q, gamma_k;       /**< fp32 [d]: QK-norm gains */
  StrataTensor s;                      /**< fp32 [total, 8] (dynamic), or not given: static */
  StrataTensor dgamma_q, dgamma_k, ds; /**< backward, written */
  int32_t rope;                        /**< 0 or 1 */
  float rope_theta, norm_eps, anchor_eps;
} StrataExo;

/** Most sources of one Depth-Attention layer (core::kMaxSources). */
#define STRATA_DEPTH_MAX_SOURCES 8

/** Depth-Attention's token-local pass of one layer (SPEC §1): q_rot = RoPE(RMSNorm(q)),
 *  k^ = RMSNorm(RoPE(k)), and v^ = softmax over the sources' k^_j and its own k^ of the group's
 *  mean query, applied to the sources' v^_j and its own v. The attention's q, k, v are q_rot, k^,
 *  v^ (written by the forward); in the backward its dq, dk, dv are scratch (the attention's
 *  gradients, read by the pass). All [.., heads, d] tensors here are contiguous. */
typedef struct StrataDepth {
  StrataTensor q, k, v; /**< the layer's raw projections */
  int32_t num_sources;  /**< <= STRATA_DEPTH_MAX_SOURCES */
  StrataTensor src_khat[STRATA_DEPTH_MAX_SOURCES], src_vhat[STRATA_DEPTH_MAX_SOURCES];
  StrataTensor gamma_q, gamma_k; /**< fp32 [d] QK-norm gains, or not given: no QK-norm */
  StrataTensor dq, dk, dv;       /**< backward: the raw projections' gradients, written */
  /** backward: fp32 [tokens, h_k, d], the sum of later layers' shares of this layer's k^ / v^
   *  gradient (not given: none) */
  StrataTensor dkhat_acc, dvhat_acc;
  /** backward: fp32 [tokens, h_k, d] per source, added to (+=): its share of the gradient */
  StrataTensor src_dkhat_acc[STRATA_DEPTH_MAX_SOURCES], src_dvhat_acc[STRATA_DEPTH_MAX_SOURCES];
  StrataTensor dgamma_q, dgamma_k; /**< backward: fp32 [d] (with QK-norm), written */
  int32_t rope;                    /**< 0 or 1 */
  float rope_theta, eps;
} StrataDepth;

/** MEA's composition of one layer (SPEC §4): K' = sum_c A^K[c, h] K_c[c], V' likewise, with the
 *  head GroupNorm on K', V' (site 0, KeyValue) or on the attention output (site 1, Output), RoPE
 *  on q and K'. The attention's q, k, v are the q_rot and K', V' buffers the forward writes (the
 *  backward reads them); its `out` is the layer's output at KeyValue and the attention output O
 *  before the GroupNorm at Output (then `out` below receives GN_o(O)); in the backward its dout
 *  is dL/d(layer output) and dq, dk, dv are scratch. Activations are contiguous. */
typedef struct StrataMea {
  StrataTensor q, kc, vc; /**< raw q [.., h, d]; the component heads K_c, V_c [.., h_c, d] */
  StrataTensor a_k, a_v;  /**< fp32 [h_c, h_kv] */
  StrataTensor gamma_k, beta_k, gamma_v, beta_v; /**< KeyValue: fp32 [h_kv, d] */
  StrataTensor gamma_o, beta_o;                  /**< Output: fp32 [h, d] */
  StrataTensor kc_rot; /**< Output: RoPE(K_c) [.., h_c, d], written by the forward */
  StrataTensor out;    /**< Output: GN_o(O), like q, written by the forward */
  StrataTensor dq, dkc, dvc, da_k, da_v;                                /**< backward, written */
  StrataTensor dgamma_k, dbeta_k, dgamma_v, dbeta_v, dgamma_o, dbeta_o; /**< backward (site's) */
  int32_t site;                                                         /**< 0 KeyValue, 1 Output */
  int32_t rope;                                                         /**< 0 or 1 */
  float rope_theta, gn_eps;
} StrataMea;

/** What a decode layer computes (StrataDecode::method). */
enum StrataDecodeMethod {
  STRATA_DECODE_VANILLA = 0, /**< attention; v not given: SVFormer's layer >= 1 (see v_cache) */
  STRATA_DECODE_GATED = 1,   /**< Gated Attention: the StrataGate's gate logits of the new tokens */
  STRATA_DECODE_RESFORMER = 2, /**< ResFormer's layer >= 1: caches V' = lambda_self V + lambda_first
                                    V_0 (StrataValueResidual's v_first, lambda_self, lambda_first);
                                    its layer 0 is VANILLA */
  STRATA_DECODE_DEPTH = 3,     /**< Depth-Attention: StrataDepth's sources, gains and RoPE */
  STRATA_DECODE_EXOFORMER = 4, /**< ExoFormer: StrataExo's anchors, lambdas, gains (the streams' p
                                    are not read: the projections are q, k, v and the gate) */
  STRATA_DECODE_MEA = 5        /**< MEA: StrataMea's A^K, A^V, GroupNorm affines, site, RoPE */
};

/** One layer of a serving step over a paged KV cache (api::DecodeStack::step_layer): the new
 *  tokens' token-local pass (Depth, ExoFormer, MEA's RoPE) into the step buffers, their K and V
 *  rows (what the paper caches) appended at their slots, then the new queries' attention over
 *  the cache, causal within each sequence's chunk. Every new-token tensor is contiguous
 *  [total_q, heads, d]. The cache's lengths count this step's tokens (vLLM's convention). */
typedef struct StrataDecode {
  int32_t method;       /**< StrataDecodeMethod */
  StrataTensor q, k, v; /**< the new tokens: q [total_q, h, d]; k, v [total_q, h_k, d] (MEA: K_c,
                             V_c with the H_c component heads). v not given (VANILLA): SVFormer's
                             layer >= 1, whose v_cache is layer 0's, read and not written */
  /** This layer's cache, [num_pages, page_size, h_k, d] with a contiguous head_dim and any other
   *  strides (an HND cache [num_pages, h_k, page_size, d] as its transposed view); without a
   *  block_table [slots, capacity, h_k, d], sequence s in slot s. Written at the slots. */
  StrataTensor k_cache, v_cache;
  StrataTensor cu_seqlens_q; /**< int32 [b + 1]: the new tokens of each sequence */
  StrataTensor seqlens_k; /**< int32 [b]: tokens in each sequence's cache, the new ones included */
  StrataTensor block_table;  /**< int32 [b, max_pages] physical pages, or not given */
  StrataTensor slot_mapping; /**< int64 [total_q]: page * page_size + offset of each new token's row
                                  (negative: a padding token, not stored) */
  StrataTensor positions;    /**< int32 [total_q]: each new token's position, for RoPE (required
                                  when the pass rotates) */
  int32_t max_seqlen_q;      /**< the longest chunk of new tokens */
  float softmax_scale;
  int32_t causal, window_left;
  int32_t num_splits;     /**< key splits (flash-decoding); > 1 needs the workspace */
  StrataTensor workspace; /**< uint8, strata_decode_workspace_bytes (num_splits > 1) */
  StrataTensor out;       /**< [total_q, h, d], written (MEA at site Output: GN_o(O)) */
  StrataTensor lse;       /**< fp32 [h, total_q], written */
  /** The pass's outputs, step buffers (written): DEPTH q_rot [total_q, h, d], k^ and v^
   *  [total_q, h_k, d] (the sources of later layers); EXOFORMER q~, k~, v~ and g~ (g_attn, like
   *  q); MEA with RoPE: RoPE(q) (q_attn) and at the Output site RoPE(K_c) (k_attn). */
  StrataTensor q_attn, k_attn, v_attn, g_attn;
  void* stream; /**< cudaStream_t (ignored by the simulator) */
} StrataDecode;

/** The message of this thread's last failed call ("ok" if none). */
STRATA_CAPI_EXPORT const char* strata_capi_last_error(void);
/** STRATA_CAPI_VERSION of the library, and the sizes of its structs (checked by bindings). */
STRATA_CAPI_EXPORT int32_t strata_capi_version(void);
/** sizeof(StrataTensor), sizeof(StrataAttention), sizeof(StrataValueResidual),
 *  sizeof(StrataGate), sizeof(StrataExo), sizeof(StrataDepth), sizeof(StrataMea),
 *  sizeof(StrataDecode), in that order, into sizes[0..7]. */
STRATA_CAPI_EXPORT void strata_capi_struct_sizes(int64_t* sizes);
/** "sim_v1" (the CPU simulator) or "cuda_v1" (nvcc). */
STRATA_CAPI_EXPORT const char* strata_capi_executor(void);
/** Simulator only: worker threads for a launch's blocks (0: keep), and the thread schedule
 *  ("forward", "reverse", "random:SEED"; NULL: keep). Returns nonzero on a bad schedule. */
STRATA_CAPI_EXPORT int strata_capi_sim_configure(int32_t workers, const char* schedule);

/* Attention (flash_attn): forward writes out and lse; backward writes dq, dk, dv. */
STRATA_CAPI_EXPORT int strata_flash_fwd(const StrataAttention* a);
STRATA_CAPI_EXPORT int strata_flash_bwd_workspace_bytes(const StrataAttention* a, int64_t* bytes);
STRATA_CAPI_EXPORT int strata_flash_bwd(const StrataAttention* a);

/* ResFormer, layer l >= 1 (layer 0 and SVFormer's layers are strata_flash_*). The backward also
 * writes dv (= lambda_self * dL/dV'), adds lambda_first * dL/dV' into vr->dv_first and writes
 * dlambda_self / dlambda_first. */
STRATA_CAPI_EXPORT int strata_resformer_fwd(const StrataAttention* a,
                                            const StrataValueResidual* vr);
STRATA_CAPI_EXPORT int strata_resformer_bwd_workspace_bytes(const StrataAttention* a,
                                                            const StrataValueResidual* vr,
                                                            int64_t* bytes);
STRATA_CAPI_EXPORT int strata_resformer_bwd(const StrataAttention* a,
                                            const StrataValueResidual* vr);

/* Gated Attention. The backward reads the forward's gated out and writes dq, dk, dv, dgate. */
STRATA_CAPI_EXPORT int strata_gated_fwd(const StrataAttention* a, const StrataGate* g);
STRATA_CAPI_EXPORT int strata_gated_bwd_workspace_bytes(const StrataAttention* a,
                                                        const StrataGate* g, int64_t* bytes);
STRATA_CAPI_EXPORT int strata_gated_bwd(const StrataAttention* a, const StrataGate* g);

/* ExoFormer, one layer (mix + Gated Attention). The backward writes every d* field of x, and the
 * anchors' gradients of this layer alone (a stack sums them over its layers). */
STRATA_CAPI_EXPORT int strata_exoformer_fwd(const StrataAttention* a, const StrataGate* g,
                                            const StrataExo* x);
STRATA_CAPI_EXPORT int strata_exoformer_bwd_workspace_bytes(const StrataAttention* a,
                                                            const StrataGate* g, const StrataExo* x,
                                                            int64_t* bytes);
STRATA_CAPI_EXPORT int strata_exoformer_bwd(const StrataAttention* a, const StrataGate* g,
                                            const StrataExo* x);

/* Depth-Attention, one layer (the depth pass + attention). The backward writes d.dq, dk, dv,
 * the gains' gradients, and adds the sources' shares into src_dkhat_acc / src_dvhat_acc. */
STRATA_CAPI_EXPORT int strata_depth_fwd(const StrataAttention* a, const StrataDepth* d);
STRATA_CAPI_EXPORT int strata_depth_bwd_workspace_bytes(const StrataAttention* a,
                                                        const StrataDepth* d, int64_t* bytes);
STRATA_CAPI_EXPORT int strata_depth_bwd(const StrataAttention* a, const StrataDepth* d);

/* MEA, one layer (the composition pass + attention; layers are independent). */
STRATA_CAPI_EXPORT int strata_mea_fwd(const StrataAttention* a, const StrataMea* m);
STRATA_CAPI_EXPORT int strata_mea_bwd_workspace_bytes(const StrataAttention* a, const StrataMea* m,
                                                      int64_t* bytes);
STRATA_CAPI_EXPORT int strata_mea_bwd(const StrataAttention* a, const StrataMea* m);

/* Decode, one layer of a step (layers run in order: a layer reads what earlier ones wrote this
 * step: ResFormer's v_first, the Depth sources' k^ and v^). Only the method's struct is read (the
 * others may be NULL); of StrataDepth its sources, gains and RoPE fields, of StrataExo its
 * anchors, gains, lambdas, s and options, of StrataMea its weights and options. The nvcc build
 * trusts the indexing (lengths, pages, slots) as FlashAttention and vLLM do; the simulator
 * checks every index against the cache. */
STRATA_CAPI_EXPORT int strata_decode_workspace_bytes(const StrataDecode* d, const StrataGate* g,
                                                     const StrataValueResidual* vr,
                                                     const StrataDepth* depth, const StrataExo* x,
                                                     const StrataMea* m, int64_t* bytes);
STRATA_CAPI_EXPORT int strata_decode_layer(const StrataDecode* d, const StrataGate* g,
                                           const StrataValueResidual* vr, const StrataDepth* depth,
                                           const StrataExo* x, const StrataMea* m);

#ifdef __cplusplus
}
#endif

#endif /* STRATA_CAPI_H_ */
