"""One default per concept, the values strata/core/defaults.hpp states for the C++ API
(tests/test_defaults.py checks that the two agree). Every function of strata_torch takes its
defaults from here:

* optional QK-norm is off unless asked (depth_attention: pass gamma_q and gamma_k);
  ExoFormer's QK-norm and MEA's GroupNorm are steps of those methods and always run;
* RoPE is on; its base theta is each paper's (the configurations differ: 1e4 and 5e5);
* RMSNorm epsilon 1e-6, GroupNorm epsilon 1e-5.
"""
QK_NORM = False
ROPE = True
RMS_NORM_EPS = 1e-6
GROUP_NORM_EPS = 1e-5

# RoPE base theta per paper (SPEC.md)
ROFORMER_ROPE_THETA = 10000.0           # RoFormer's base, the Llama default
DEPTH_ATTENTION_ROPE_THETA = 10000.0    # the reference Llama code (SPEC 1a)
GATED_ATTENTION_ROPE_THETA = ROFORMER_ROPE_THETA  # not stated by the paper
EXOFORMER_ROPE_THETA = 500000.0         # the official train.py (SPEC 3a)
MEA_ROPE_THETA = ROFORMER_ROPE_THETA    # not stated by the paper
