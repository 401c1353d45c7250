/// \file
/// The tensor map a TMA copy reads (CUtensorMap: 128 opaque bytes, 64-byte aligned) and the host
/// encoder that fills it for a tiled box: `tma::encode_tiled`, cuTensorMapEncodeTiled's fields
/// in a struct. Every driver rule the copy depends on is checked first, with a Status naming the
/// field (the driver answers CUDA_ERROR_INVALID_VALUE and nothing else); then, under nvcc, the
/// driver's encoder fills the map, and in the simulator Strata's own encoding does, which the
/// emulated TMA (sim/tma.hpp) decodes.
///
/// Scope: the tiled mode with interleave NONE, element strides of 1, and the swizzles NONE, 32B,
/// 64B and 128B (the modes the Hopper kernels use); others are refused by name.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "strata/arch/wgmma_layout.hpp"
#include "strata/config.hpp"
#include "strata/status.hpp"

#if !STRATA_SIM
#include <cuda.h>
#include <cuda_runtime.h>
#endif

namespace strata::tma {

/// CUtensorMap's storage: what a kernel receives (by value, as a __grid_constant__ parameter,
/// or by pointer to global memory) and passes to the TMA ops.
struct alignas(64) TensorMap {
  uint64_t opaque[16];
};
static_assert(sizeof(TensorMap) == 128, "CUtensorMap is 128 bytes");

/// The shared-memory swizzle of the box (CU_TENSOR_MAP_SWIZZLE_*): 16-byte chunks are permuted
/// within spans of 32, 64 or 128 bytes, by XORing address bits [4, 4+b) with bits [7, 7+b),
/// b = 1, 2, 3. The pattern repeats every 256, 512, 1024 bytes.
enum class Swizzle : uint8_t { kNone = 0, k32B = 1, k64B = 2, k128B = 3 };

/// Bytes of the swizzle span (0 for none).
constexpr int swizzle_span(Swizzle s) {
  return s == Swizzle::kNone ? 0 : 16 << int(s);
}
/// Alignment a swizzled box's shared destination needs so that the pattern starts at its first
/// byte (8 rows of the span); 128 for no swizzle (TMA's own requirement).
constexpr int swizzle_alignment(Swizzle s) {
  return s == Swizzle::kNone ? 128 : 8 * swizzle_span(s);
}
/// Byte offset of the dense box byte `off` in a shared buffer with swizzle `s`.
constexpr uint32_t swizzle_offset(uint32_t off, Swizzle s) {
  // the pattern wgmma reads (one definition of it: arch/wgmma_layout.hpp)
  return arch::wgmma::swizzle_address(off, arch::wgmma::SmemSwizzle(int(s)));
}

/// Element types (the CU_TENSOR_MAP_DATA_TYPE_* a kernel uses; the value is the driver's).
enum class DataType : uint8_t {
  kU8 = 0,
  kU16 = 1,
  kU32 = 2,
  kF16 = 6,
  kF32 = 7,
  kBF16 = 9,
};
constexpr int element_bytes(DataType t) {
  return t == DataType::kU8                                                     ? 1
         : (t == DataType::kU16 || t == DataType::kF16 || t == DataType::kBF16) ? 2
                                                                                : 4;
}
constexpr bool is_float(DataType t) {
  return t == DataType::kF16 || t == DataType::kF32 || t == DataType::kBF16;
}

/// cuTensorMapEncodeTiled's arguments. Dimension 0 is the contiguous one.
struct Tiled {
  DataType dtype = DataType::kBF16;
  int rank = 2;                          ///< 1..5
  const void* global_address = nullptr;  ///< 16-byte aligned
  uint64_t global_dim[5] = {};           ///< elements per dimension, 1..2^32
  uint64_t global_stride[4] = {};        ///< bytes between consecutive indices of dims 1..rank-1
  uint32_t box_dim[5] = {};              ///< elements of the box per dimension, 1..256
  Swizzle swizzle = Swizzle::kNone;
  bool oob_nan = false;  ///< out-of-bounds elements read as NaN (float types) instead of 0
};

/// Bytes one box fills in shared memory.
inline uint64_t box_bytes(const Tiled& t) {
  uint64_t n = uint64_t(element_bytes(t.dtype));
  for (int i = 0; i < t.rank && i < 5; ++i) n *= t.box_dim[i];
  return n;
}

/// The driver's rules for a tiled tensor map (cuda.h, cuTensorMapEncodeTiled), each failure a
/// Status naming the field.
inline Status validate(const Tiled& t) {
  auto bad = [](const std::string& field, const std::string& why) {
    return Status::InvalidArgument("tma::Tiled." + field + ": " + why);
  };
  const int e = element_bytes(t.dtype);
  switch (t.dtype) {
    case DataType::kU8:
    case DataType::kU16:
    case DataType::kU32:
    case DataType::kF16:
    case DataType::kF32:
    case DataType::kBF16:
      break;
    default:
      return bad("dtype", "not one of U8, U16, U32, F16, F32, BF16");
  }
  if (t.rank < 1 || t.rank > 5) return bad("rank", std::to_string(t.rank) + " outside 1..5");
  if (!t.global_address) return bad("global_address", "null");
  if (reinterpret_cast<uintptr_t>(t.global_address) % 16)
    return bad("global_address", "not 16-byte aligned");
  for (int i = 0; i < t.rank; ++i) {
    const std::string f = "[" + std::to_string(i) + "]";
    if (t.global_dim[i] < 1 || t.global_dim[i] > (uint64_t(1) << 32))
      return bad("global_dim" + f, std::to_string(t.global_dim[i]) + " outside 1..2^32");
    if (t.box_dim[i] < 1 || t.box_dim[i] > 256)
      return bad("box_dim" + f, std::to_string(t.box_dim[i]) + " outside 1..256");
  }
  for (int i = 0; i + 1 < t.rank; ++i) {
    const std::string f = "[" + std::to_string(i) + "]";
    const uint64_t s = t.global_stride[i];
    if (s % 16 || s >= (uint64_t(1) << 40))
      return bad("global_stride" + f,
                 std::to_string(s) + " bytes: not a multiple of 16 below 2^40");
    // each stride spans the previous dimension (the driver's `globalStrides[i] >= globalDim[i]`
    // in its layout formula)
    const uint64_t inner =
        i == 0 ? t.global_dim[0] * uint64_t(e) : t.global_stride[i - 1] * t.global_dim[i];
    if (s < inner)
      return bad("global_stride" + f, std::to_string(s) + " bytes is less than the " +
                                          std::to_string(inner) +
                                          " bytes of the dimensions inside it");
  }
  const uint64_t inner_box = uint64_t(t.box_dim[0]) * uint64_t(e);
  if (inner_box % 16)
    return bad("box_dim[0]", std::to_string(inner_box) + " bytes: not a multiple of 16");
  if (t.swizzle != Swizzle::kNone && inner_box > uint64_t(swizzle_span(t.swizzle)))
    return bad("box_dim[0]", std::to_string(inner_box) + " bytes exceed the " +
                                 std::to_string(swizzle_span(t.swizzle)) + "-byte swizzle span");
  if (int(t.swizzle) > 3) return bad("swizzle", "not NONE, 32B, 64B or 128B");
  if (t.oob_nan && !is_float(t.dtype)) return bad("oob_nan", "needs a floating-point dtype");
  return Status::Ok();
}

/// Strata's own encoding of a validated Tiled (the simulator's tensor map; never seen by a GPU).
struct SimEncoding {
  static constexpr uint32_t kMagic = 0x504D5453u;  // "STMP"
  uint32_t magic;
  uint8_t dtype, rank, swizzle, oob_nan;
  const void* global_address;
  uint32_t global_dim_m1[5];  // dim - 1 (dims go to 2^32)
  uint32_t box_dim[5];
  uint64_t global_stride[4];
};
static_assert(sizeof(SimEncoding) <= sizeof(TensorMap), "the simulator's encoding fits the map");

STRATA_EXECUTOR_BEGIN  // its body differs between the executors: one copy per executor

/// Fills `*map` for `t` (after validate): the driver's cuTensorMapEncodeTiled under nvcc, Strata's
/// encoding in the simulator.
inline Status encode_tiled(TensorMap* map, const Tiled& t) {
  if (!map) return Status::InvalidArgument("tma::encode_tiled: map is null");
  if (reinterpret_cast<uintptr_t>(map) % 64)
    return Status::InvalidArgument("tma::encode_tiled: map is not 64-byte aligned");
  if (Status s = validate(t); !s.ok()) return s;
  std::memset(map, 0, sizeof *map);
#if STRATA_SIM
  SimEncoding enc{};
  enc.magic = SimEncoding::kMagic;
  enc.dtype = uint8_t(t.dtype);
  enc.rank = uint8_t(t.rank);
  enc.swizzle = uint8_t(t.swizzle);
  enc.oob_nan = t.oob_nan ? 1 : 0;
  enc.global_address = t.global_address;
  for (int i = 0; i < t.rank; ++i) {
    enc.global_dim_m1[i] = uint32_t(t.global_dim[i] - 1);
    enc.box_dim[i] = t.box_dim[i];
  }
  for (int i = 0; i + 1 < t.rank; ++i) enc.global_stride[i] = t.global_stride[i];
  std::memcpy(map, &enc, sizeof enc);
  return Status::Ok();
#else
  using Encode =
      CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                   const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                   CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult q{};
  if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault,
                                       &q) != cudaSuccess ||
      q != cudaDriverEntryPointSuccess || !fn)
    return Status::Unsupported(
        "tma::encode_tiled: the driver has no cuTensorMapEncodeTiled (CUDA 12+)");
  cuuint64_t dim[5], stride[4];
  cuuint32_t box[5], estride[5] = {1, 1, 1, 1, 1};
  for (int i = 0; i < t.rank; ++i) {
    dim[i] = t.global_dim[i];
    box[i] = t.box_dim[i];
  }
  for (int i = 0; i + 1 < t.rank; ++i) stride[i] = t.global_stride[i];
  const CUresult r = reinterpret_cast<Encode>(fn)(
      reinterpret_cast<CUtensorMap*>(map), CUtensorMapDataType(int(t.dtype)), cuuint32_t(t.rank),
      const_cast<void*>(t.global_address), dim, stride, box, estride, CU_TENSOR_MAP_INTERLEAVE_NONE,
      CUtensorMapSwizzle(int(t.swizzle)), CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
      t.oob_nan ? CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA
                : CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    return Status::InvalidArgument(
        "tma::encode_tiled: cuTensorMapEncodeTiled refused the map (CUresult " +
        std::to_string(int(r)) + ")");
  return Status::Ok();
#endif
}

STRATA_EXECUTOR_END
}  // namespace strata::tma
