/// \file
/// strata::Status: the result of every public entry point. Nothing throws across Strata's API.
#pragma once

#include <cstdio>
#include <cstring>
#include <string>

namespace strata {

/// Category of a failure; `kOk` means success.
enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument,  ///< a Params field or launch configuration is invalid
  kInvalidLaunch,    ///< grid/block/shared-memory configuration the device cannot run
  kKernelFault,      ///< the simulator detected a fault while executing a kernel
  kCudaError,        ///< the CUDA runtime reported an error
  kUnsupported,      ///< a valid request this build does not support (e.g. head dim not compiled)
};

/// Result of an operation: a code and, on failure, a message naming the field or the fault.
class Status {
 public:
  /// Success.
  Status() = default;
  /// A failure (or success when `code == kOk`) with a message.
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string m) {
    return {StatusCode::kInvalidArgument, std::move(m)};
  }
  static Status InvalidLaunch(std::string m) { return {StatusCode::kInvalidLaunch, std::move(m)}; }
  static Status KernelFault(std::string m) { return {StatusCode::kKernelFault, std::move(m)}; }
  static Status CudaError(std::string m) { return {StatusCode::kCudaError, std::move(m)}; }
  static Status Unsupported(std::string m) { return {StatusCode::kUnsupported, std::move(m)}; }

  /// True on success.
  bool ok() const { return code_ == StatusCode::kOk; }
  /// The failure category.
  StatusCode code() const { return code_; }
  /// Human-readable message; "ok" on success.
  const char* message() const { return ok() && message_.empty() ? "ok" : message_.c_str(); }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

/// Name of a status code, e.g. "kernel fault".
inline const char* to_string(StatusCode c) {
  switch (c) {
    case StatusCode::kOk:
      return "ok";
    case StatusCode::kInvalidArgument:
      return "invalid argument";
    case StatusCode::kInvalidLaunch:
      return "invalid launch";
    case StatusCode::kKernelFault:
      return "kernel fault";
    case StatusCode::kCudaError:
      return "CUDA error";
    case StatusCode::kUnsupported:
      return "unsupported";
  }
  return "unknown";
}

}  // namespace strata
