// strata/cost/perf_model.hpp: occupancy by hand for the limits that bind, the peak rates NVIDIA
// quotes recovered from the per-SM rates, FlashAttention-2's tile configurations and their work
// per tile counted by hand, and the bound's choice of the limiting unit.
#include <strata/cost/perf_model.hpp>

#include <gtest/gtest.h>

#include <cstring>

namespace {

using namespace strata::cost;

TEST(PerfModel, PeakRatesAreNvidiasFigures) {
  // 108 x 1.41 GHz x 2048 = 311.9 TFLOP/s; 132 x 1.83 GHz x 4096 (wgmma) = 989.5 TFLOP/s
  EXPECT_NEAR(kA100.sms * kA100.clock_ghz * kA100.tensor_flop_per_clk * 1e-3, 311.9, 0.1);
  EXPECT_NEAR(kH100.sms * kH100.clock_ghz * 2 * kH100.tensor_flop_per_clk * 1e-3, 989.5, 0.1);
}

TEST(PerfModel, ResidentBlocksTakeTheBindingLimit) {
  // shared memory binds: 87,040 bytes (a d = 128 forward with two K/V stages) -> 1 block on an
  // A100, 2 on an H100
  EXPECT_EQ(resident_blocks(kA100, {128, 128, 87040}), 1);
  EXPECT_EQ(resident_blocks(kH100, {128, 128, 87040}), 2);
  // FlashAttention-2's d = 128 forward: 64 KB -> 2 blocks of 4 warps on an A100
  EXPECT_EQ(resident_blocks(kA100, {128, 255, 65536}), 2);
  // registers bind: 255 -> 256 per thread, 8192 per warp, 8 warps per SM -> 2 blocks of 4 warps
  EXPECT_EQ(resident_blocks(kA100, {128, 255, 1024}), 2);
  // 64 registers: 2048 per warp, 8192 per block of 4 warps -> 8 blocks (threads would allow 16)
  EXPECT_EQ(resident_blocks(kA100, {128, 64, 0}), 8);
  // threads bind: 1024-thread blocks -> 2; tiny blocks -> the 32-block limit
  EXPECT_EQ(resident_blocks(kA100, {1024, 32, 0}), 2);
  EXPECT_EQ(resident_blocks(kA100, {32, 32, 0}), 32);
}

TEST(PerfModel, FlashAttention2ConfigurationsFromItsSource) {
  const Fa2Config f64 = fa2_forward_config(64), f128 = fa2_forward_config(128);
  EXPECT_EQ(f64.bm, 128);
  EXPECT_EQ(f64.bn, 128);
  EXPECT_EQ(f128.bn, 64);
  EXPECT_EQ(f128.smem_bytes, 64 * 1024);  // "128 x 64 ... 64 KB"
  const Fa2Config b64 = fa2_backward_config(64), b128 = fa2_backward_config(128);
  EXPECT_EQ(b64.bm, 128);
  EXPECT_EQ(b64.warps, 8);
  EXPECT_EQ(b128.bm, 64);
  EXPECT_EQ(b128.bn, 128);
  EXPECT_EQ(b128.atom_dq, 2);
}

TEST(PerfModel, FlashAttention2WorkPerTileByHand) {
  // forward d = 128, 128 x 64, 4 warps: 1024 mma; Q 32 KB once, K and V 16 KB per warp each
  // (128 KB), cp.async writes 32 KB: 196,608 bytes = 1536 wavefronts; 8192 + 4 x 128 exp2
  const TileWork f = fa2_forward_tile(128, fa2_forward_config(128));
  EXPECT_DOUBLE_EQ(f.mma, 1024);
  EXPECT_DOUBLE_EQ(f.smem_wavefronts, 1536);
  EXPECT_DOUBLE_EQ(f.sfu, 8704);
  // backward d = 128, 64 x 128, 8 warps 2/4/2: 2560 mma; S and dP: 2 x 8 x (32 + 32) x 128 x 2
  // = 262,144 bytes; dV and dK: 2 x 8 x (32 x 64 + 64 x 64) x 2 = 196,608; dQ: 8 x (32 + 32) x 128
  // x 2 = 131,072; writes 2 x 64 x 128 x 2 + 2 x 64 x 128 x 2 = 65,536 -> 655,360 bytes
  const TileWork b = fa2_backward_tile(128, fa2_backward_config(128));
  EXPECT_DOUBLE_EQ(b.mma, 2560);
  EXPECT_DOUBLE_EQ(b.smem_wavefronts, 655360.0 / 128);
  EXPECT_DOUBLE_EQ(b.sfu, 8192);
}

TEST(PerfModel, FlashAttention2EpiloguesStageThroughSharedMemory) {
  // forward d = 128: O of 128 rows x 128 x 2 bytes written and read back: 65,536 bytes
  EXPECT_DOUBLE_EQ(fa2_forward_epilogue(128, fa2_forward_config(128)).smem_wavefronts, 512);
  // backward d = 128, key tiles of 128: dK and dV, 2 x 32 KB, written and read: 131,072 bytes
  EXPECT_DOUBLE_EQ(fa2_backward_epilogue(128, fa2_backward_config(128)).smem_wavefronts, 1024);
  EXPECT_DOUBLE_EQ(fa2_backward_epilogue(64, fa2_backward_config(64)).smem_wavefronts, 512);
}

TEST(PerfModel, TilePairsCountTheCausalTriangle) {
  EXPECT_DOUBLE_EQ(tile_pairs(256, 64, 64, false), 16);
  EXPECT_DOUBLE_EQ(tile_pairs(256, 64, 64, true), 1 + 2 + 3 + 4);
  EXPECT_DOUBLE_EQ(tile_pairs(256, 128, 64, true), 2 + 4);
  EXPECT_DOUBLE_EQ(tile_pairs(100, 64, 64, false), 4);  // ragged: 2 x 2
}

TEST(PerfModel, TheBoundPicksTheSlowestUnit) {
  // 1000 tiles of 1024 mma on an A100: 1000 x 1024 x 4096 / (2048 x 1.41e9 x 108) s
  const double flops = 1000.0 * 1024 * 4096;
  const Bound t = bound(kA100, {1024, 100, 100}, 1000, 0, flops);
  EXPECT_STREQ(t.limit, "tensor");
  EXPECT_NEAR(t.tflops, 311.9, 0.1);  // the whole peak: nothing else binds
  const Bound s = bound(kA100, {1024, 4096, 100}, 1000, 0, flops);
  EXPECT_STREQ(s.limit, "smem");  // 4096 wavefronts = 4096 clocks > 2048
  EXPECT_NEAR(s.tflops, 311.9 / 2, 0.1);
  const Bound u = bound(kA100, {1024, 100, 65536}, 1000, 0, flops);
  EXPECT_STREQ(u.limit, "sfu");  // 65536 / 16 = 4096 clocks
  const Bound d = bound(kA100, {1, 1, 1}, 1, 2039e9, flops);
  EXPECT_STREQ(d.limit, "dram");
  EXPECT_NEAR(d.seconds, 1.0, 1e-12);
}

TEST(PerfModel, WgmmaPeakIsTheH100Datasheets) {
  // 989 TFLOP/s dense bf16 = 4096 FLOP/clk/SM x 132 SMs x 1.83 GHz
  EXPECT_NEAR(kH100Wgmma.tensor_flop_per_clk * kH100Wgmma.sms * kH100Wgmma.clock_ghz * 1e-3, 989.0,
              1.0);
}

TEST(PerfModel, FlashAttention3ConfigurationsFromItsSource) {
  // hopper/tile_size.h: {kBlockM, kBlockN, MmaPV_is_RS}
  const auto d64 = fa3_forward_config(64, false), d64c = fa3_forward_config(64, true);
  EXPECT_EQ(d64.bm, 192);
  EXPECT_EQ(d64.bn, 192);
  EXPECT_FALSE(d64.pv_rs);
  EXPECT_EQ(d64c.bn, 128);
  EXPECT_TRUE(d64c.pv_rs);
  const auto d96 = fa3_forward_config(96, false);
  EXPECT_EQ(d96.bm, 192);
  EXPECT_EQ(d96.bn, 144);
  EXPECT_FALSE(d96.pv_rs);
  const auto d128 = fa3_forward_config(128, false), d128c = fa3_forward_config(128, true);
  EXPECT_EQ(d128.bm, 128);
  EXPECT_EQ(d128.bn, 176);
  EXPECT_TRUE(d128.pv_rs);
  EXPECT_EQ(d128c.bn, 128);
  for (int d : {64, 96, 128})
    for (bool causal : {false, true}) {
      const auto c = fa3_forward_config(d, causal);
      EXPECT_EQ(c.consumer_wgs, c.bm / 64);
      // every configuration fits an H100's shared memory (FA3 sizes its tiles to)
      EXPECT_LE(wgmma_forward_smem(d, c), 227 * 1024) << d << " " << causal;
    }
}

TEST(PerfModel, WgmmaWorkPerTileByHand) {
  // Strata's d = 128: two warpgroups; S: 8 k-steps of A 2 KB + B 4 KB; P V (RS): 8 k-steps of
  // B 4 KB; the TMA writes of K and V, 64 KB
  const auto c = strata_sm90_forward_config(128);
  const TileWork w = wgmma_forward_tile(128, c);
  EXPECT_DOUBLE_EQ(w.mma, 4.0 * 128 * 128 * 128 / 4096);
  EXPECT_DOUBLE_EQ(w.smem_wavefronts, (2 * (8 * 6144.0 + 8 * 4096.0) + 65536.0) / 128);
  EXPECT_DOUBLE_EQ(w.sfu, 128.0 * 128 + 128);
  // SS P V adds A (64 x 16) per k-step and P's write
  WgmmaFwdConfig ss = c;
  ss.pv_rs = false;
  EXPECT_DOUBLE_EQ(wgmma_forward_tile(128, ss).smem_wavefronts - w.smem_wavefronts,
                   2 * (8 * 2048.0 + 64.0 * 128 * 2) / 128);
  // FA3 stages O through shared memory (a write, a read) besides Q's TMA write
  EXPECT_DOUBLE_EQ(wgmma_forward_epilogue(128, fa3_forward_config(128, true)).smem_wavefronts,
                   3.0 * 128 * 128 * 2 / 128);
  EXPECT_DOUBLE_EQ(wgmma_forward_epilogue(128, c).smem_wavefronts, 128.0 * 128 * 2 / 128);
}

TEST(PerfModel, WgmmaWorkOfTwoRawVTilesByHand) {
  // ResFormer's V formed from two raw tiles: a second TMA write of 32 KB (d = 128, 128 keys),
  // then the mixer warps read both tiles and write V' (3 x 32 KB); two more 32 KB stages
  const auto one = strata_sm90_forward_config(128), two = strata_sm90_forward_config(128, 2);
  EXPECT_DOUBLE_EQ(
      wgmma_forward_tile(128, two).smem_wavefronts - wgmma_forward_tile(128, one).smem_wavefronts,
      4 * 32768.0 / 128);
  EXPECT_DOUBLE_EQ(wgmma_forward_tile(128, two).mma, wgmma_forward_tile(128, one).mma);
  EXPECT_EQ(wgmma_forward_smem(128, two) - wgmma_forward_smem(128, one), 2 * 32768);
}

TEST(PerfModel, TilePairsFollowTheMasksBlockSkipping) {
  // square, causal: query tile i of 8 sees i + 1 key tiles; 300 queries against 1000 keys,
  // causal bottom-right aligned: query tile [0, 128) sees keys [0, 828) -> 7 key tiles,
  // [128, 256) -> 8, [256, 300) -> 8
  EXPECT_DOUBLE_EQ(tile_pairs(1000, 1000, 128, 128, true, -1), 1 + 2 + 3 + 4 + 5 + 6 + 7 + 8);
  EXPECT_DOUBLE_EQ(tile_pairs(300, 1000, 128, 128, true, -1), 7 + 8 + 8);
  EXPECT_DOUBLE_EQ(tile_pairs(300, 1000, 128, 128, false, -1), 3 * 8);
  // a window of 100 left of the diagonal: [0, 128) sees [600, 828) -> tiles 4..6 (3),
  // [128, 256) [728, 956) -> 5..7 (3), [256, 300) [856, 1000) -> 6..7 (2)
  EXPECT_DOUBLE_EQ(tile_pairs(300, 1000, 128, 128, true, 100), 3 + 3 + 2);
  // more queries than keys: the first 200 rows see no key
  EXPECT_DOUBLE_EQ(tile_pairs(300, 100, 128, 128, true, -1), 0 + 1 + 1);
}

TEST(PerfModel, ResFormerPlansCrossOverWithTheQueryTiles) {
  // forming V per tile repeats for every query tile: short sequences keep it, long ones write
  // V' once (batch 4 x 16 heads: from about 1.5K tokens, causal about 2.5K: causal halves the
  // pairs, so it crosses later); a window keeps the per-tile plan
  for (int d : {64, 96, 128}) {
    const auto short_seq = resformer_sm90_plans(4, 512, 512, 16, 16, d, false);
    EXPECT_LT(short_seq.fused_s, short_seq.materialised_s) << d;
    const auto long_seq = resformer_sm90_plans(4, 8192, 8192, 16, 16, d, false);
    EXPECT_GT(long_seq.fused_s, long_seq.materialised_s) << d;
    const auto causal = resformer_sm90_plans(4, 8192, 8192, 16, 16, d, true);
    EXPECT_GT(causal.fused_s, causal.materialised_s) << d;
    const auto mid = resformer_sm90_plans(4, 2048, 2048, 16, 16, d, false),
               mid_causal = resformer_sm90_plans(4, 2048, 2048, 16, 16, d, true);
    EXPECT_GT(mid.fused_s, mid.materialised_s) << d;
    EXPECT_LT(mid_causal.fused_s, mid_causal.materialised_s) << d;
    const auto window = resformer_sm90_plans(4, 8192, 8192, 16, 16, d, true, 256);
    EXPECT_LT(window.fused_s, window.materialised_s) << d;
  }
}

TEST(PerfModel, FlashAttention3BackwardConfigurationsFromItsSource) {
  // hopper/flash_bwd_launch_template.h: run_mha_bwd_dispatch<Arch, T, kBlockM, kBlockN, ...>
  const auto d64 = fa3_backward_config(64, false);
  EXPECT_EQ(d64.bm, 128);
  EXPECT_EQ(d64.bn, 128);
  EXPECT_TRUE(d64.dq_split_m);  // AtomLayoutMdQ = 2
  const auto d96 = fa3_backward_config(96, true);
  EXPECT_EQ(d96.bm, 64);
  EXPECT_TRUE(d96.dp_rs);  // V_in_regs
  const auto d128 = fa3_backward_config(128, false), d128c = fa3_backward_config(128, true);
  EXPECT_EQ(d128.bm, 80);
  EXPECT_TRUE(d128.dq_swap);  // dQ_swapAB
  EXPECT_EQ(d128c.bm, 64);
  EXPECT_FALSE(d128c.dq_swap);
  for (int d : {64, 96, 128})
    for (bool causal : {false, true}) {
      const auto c = fa3_backward_config(d, causal);
      EXPECT_EQ(c.consumer_wgs, 2);
      EXPECT_TRUE(c.dq_via_smem);
      EXPECT_LE(wgmma_backward_smem(d, c), 227 * 1024) << d << " " << causal;
    }
}

TEST(PerfModel, WgmmaBackwardWorkPerTileByHand) {
  // Strata's d = 128: two warpgroups of 64 keys, 64 queries. S^T and dP^T: 8 k-steps of A 2 KB +
  // B 2 KB each; dV and dK: 4 k-steps of B 4 KB each; dQ: 8 k-steps of A 2 KB (both warpgroups)
  // + B 4 KB (64 columns each); dS^T written (16 KB), Q and dO by TMA (32 KB)
  const auto c = strata_sm90_backward_config(128);
  const TileWork w = wgmma_backward_tile(128, c);
  EXPECT_DOUBLE_EQ(w.mma, 10.0 * 64 * 128 * 128 / 4096);
  const double sdp = 2 * 2 * 8 * (2048.0 + 2048.0), dkdv = 2 * 2 * 4 * 4096.0;
  const double dq = 8 * (2 * 2048.0 + 4096.0), writes = 16384.0 + 32768.0;
  EXPECT_DOUBLE_EQ(w.smem_wavefronts, (sdp + dkdv + dq + writes) / 128);
  EXPECT_DOUBLE_EQ(w.sfu, 64.0 * 128);
  // V in registers drops dP^T's A reads; FA3's fp32 dQ staging adds a write and a read
  WgmmaBwdConfig v = c;
  v.dp_rs = true;
  EXPECT_DOUBLE_EQ(w.smem_wavefronts - wgmma_backward_tile(128, v).smem_wavefronts,
                   2 * 8 * 2048.0 / 128);
  v = c;
  v.dq_via_smem = true;
  EXPECT_DOUBLE_EQ(wgmma_backward_tile(128, v).smem_wavefronts - w.smem_wavefronts,
                   2 * 64.0 * 128 * 4 / 128);
  // per key tile: K and V by TMA; FA3 also stages dK and dV
  EXPECT_DOUBLE_EQ(wgmma_backward_epilogue(128, c).smem_wavefronts, 2.0 * 128 * 128 * 2 / 128);
  EXPECT_DOUBLE_EQ(wgmma_backward_epilogue(128, fa3_backward_config(128, true)).smem_wavefronts,
                   3 * 2.0 * 128 * 128 * 2 / 128);
}

}  // namespace
