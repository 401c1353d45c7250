// Host tests of the attention mask and the forward kernel's tile table: the key range of a query
// tile covers every connected key (block skipping never drops one), a tile declared fully
// connected has no masked pair, and the constexpr tile table is what the kernels and the static
// gates (ptxas budget, mma inventory) assume.
#include <strata/attention/flash_bwd.cuh>
#include <strata/attention/flash_fwd.cuh>

#include <gtest/gtest.h>

namespace {

using strata::attention::FlashFwdTraits;
using strata::attention::Mask;

TEST(Mask, KeyRangeAndFullTilesAgreeWithEveryPair) {
  for (int tq = 0; tq <= 12; ++tq)
    for (int tk = 0; tk <= 12; ++tk)
      for (bool causal : {false, true})
        for (int w = -1; w <= 13; ++w) {
          const Mask m{tq, tk, causal, w};
          for (int q0 = 0; q0 < tq; ++q0)
            for (int q1 = q0 + 1; q1 <= tq; ++q1) {
              const int kb = m.key_begin(q0), ke = m.key_end(q1);
              for (int i = q0; i < q1; ++i)
                for (int j = 0; j < tk; ++j)
                  if (m.connected(i, j)) {
                    ASSERT_GE(j, kb) << tq << " " << tk << " " << causal << " " << w;
                    ASSERT_LT(j, ke) << tq << " " << tk << " " << causal << " " << w;
                  }
              for (int k0 = 0; k0 < tk; ++k0)
                for (int k1 = k0 + 1; k1 <= tk; ++k1) {
                  // the backward's query range of a key tile covers every connected query
                  const int qb = m.query_begin(k0), qe = m.query_end(k1);
                  for (int j = k0; j < k1; ++j)
                    for (int i = 0; i < tq; ++i)
                      if (m.connected(i, j)) {
                        ASSERT_GE(i, qb);
                        ASSERT_LT(i, qe);
                      }
                  bool all = true;
                  for (int i = q0; i < q1; ++i)
                    for (int j = k0; j < k1; ++j) all = all && m.connected(i, j);
                  ASSERT_EQ(m.all_connected(q0, q1, k0, k1), all)
                      << tq << " " << tk << " " << causal << " " << w << " q " << q0 << ".." << q1
                      << " k " << k0 << ".." << k1;
                }
            }
        }
}

TEST(Mask, BottomRightCausalAlignment) {
  const Mask m{3, 5, true, -1};  // offset 2: query 0 sees keys 0..2
  EXPECT_TRUE(m.connected(0, 2));
  EXPECT_FALSE(m.connected(0, 3));
  EXPECT_TRUE(m.connected(2, 4));
  const Mask fewer{5, 2, true, -1};  // offset -3: queries 0..2 see nothing
  for (int j = 0; j < 2; ++j) EXPECT_FALSE(fewer.connected(2, j));
  EXPECT_TRUE(fewer.connected(3, 0));
  EXPECT_LE(fewer.key_end(3), fewer.key_begin(0));  // an empty key range: the tile is skipped
}

template <int D>
void check_traits() {
  using Tr = FlashFwdTraits<D>;
  // per m16 tile and K/V tile: S = (BN/8)(D/16) mma, P V = (D/8)(BN/16) mma, i.e. BN D / 64,
  // and each warp owns kMTiles of them
  EXPECT_EQ(Tr::kMmaPerTile, Tr::kWarps * Tr::kMTiles * Tr::kBlockN * D / 64);
  EXPECT_EQ(Tr::kBlockM, 16 * Tr::kMTiles * Tr::kWarps);
  EXPECT_LE(Tr::template kSmemBytes<__nv_bfloat16>, 99u * 1024u);
  EXPECT_EQ(Tr::kLd * 2 % 16, 0);  // padded rows stay 16-byte aligned for cp.async / ldmatrix
}

template <int D>
void check_bwd_traits() {
  using Tr = strata::attention::FlashBwdTraits<D>;
  // per warp, a quarter of each product of 2 BM BN D FLOP (4096 per mma): the dQ kernel's S, dP
  // and dQ; the dK/dV kernel's S, dP, dV and dK, and the fast mode's dQ
  constexpr int bm = Tr::kBlockM, bn = Tr::kBlockN, product = (2 * bm * bn * D / 4096) / 4;
  EXPECT_EQ(Tr::kMmaDq, 3 * product);
  EXPECT_EQ(Tr::kMmaDkDv, 4 * product);
  EXPECT_EQ(Tr::kMmaDqFused, product);
  EXPECT_EQ(Tr::kSdpMT * 32, bm);  // 2 x 2 warps: every warp tile at least 32 x 32
  EXPECT_EQ(Tr::kDqMT * 32, bm);
  EXPECT_EQ(Tr::kKvMT * 32, bn);
  EXPECT_GE(Tr::kSdpNT * 8, 32);
  EXPECT_LE(Tr::template kSmemDq<__nv_bfloat16>, 99u * 1024u);
  EXPECT_LE(Tr::template kSmemDkDv<__nv_bfloat16>, 99u * 1024u);
  EXPECT_EQ(Tr::kLdP * 2 % 16, 0);
}

TEST(FlashBwdTraits, TileTable) {
  using strata::attention::FlashBwdTraits;
  check_bwd_traits<64>();
  check_bwd_traits<96>();
  check_bwd_traits<128>();
  EXPECT_EQ(FlashBwdTraits<64>::kBlockM, 128);
  EXPECT_EQ(FlashBwdTraits<128>::kBlockM, 64);
  // K, V (64 keys), Q, dO (64 queries) and one P / dS tile: 78,848 B in both kernels, so that two
  // blocks (8 warps) fit an A100 SM's 164 KB
  EXPECT_EQ(FlashBwdTraits<128>::kSmemDkDv<__half>,
            size_t(2 * 64 + 2 * 64) * 136 * 2 + size_t(64) * 72 * 2);
  EXPECT_EQ(FlashBwdTraits<128>::kSmemDq<__half>, FlashBwdTraits<128>::kSmemDkDv<__half>);
  EXPECT_LE(2 * (FlashBwdTraits<128>::kSmemDkDv<__half> + 1024), 164u * 1024u);
  // d = 64: 128 queries; the epilogues' fp32 rows (dK and dV; dQ) fit in the same bytes
  EXPECT_EQ(FlashBwdTraits<64>::kSmemDkDv<__half>,
            size_t(2 * 64 + 2 * 128) * 72 * 2 + size_t(128) * 72 * 2);
  EXPECT_EQ(FlashBwdTraits<64>::kSmemDq<__half>, FlashBwdTraits<64>::kSmemDkDv<__half>);
  EXPECT_GE(FlashBwdTraits<128>::kSmemDkDv<__half>, size_t(2 * 64) * 136 * 4);
  EXPECT_GE(FlashBwdTraits<64>::kSmemDq<__half>, size_t(128) * 72 * 4);
}

TEST(FlashFwdTraits, TileTable) {
  check_traits<64>();
  check_traits<96>();
  check_traits<128>();
  // Q, one K and one V stage of 32 keys: 52,224 B, so two blocks (8 warps) fit an A100 SM
  EXPECT_EQ(FlashFwdTraits<128>::kBlockN, 32);
  EXPECT_EQ(FlashFwdTraits<128>::kSmemBytes<__half>, size_t(128 + 2 * 32) * 136 * 2);
  EXPECT_GE(164u * 1024u / (FlashFwdTraits<128>::kSmemBytes<__half> + 1024u), 2u);
  EXPECT_EQ(FlashFwdTraits<64>::kBlockM, 128);
  EXPECT_TRUE(FlashFwdTraits<64>::kQInRegs);
  EXPECT_FALSE(FlashFwdTraits<96>::kQInRegs);
}

}  // namespace
