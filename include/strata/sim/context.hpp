/// \file
/// Fiber context switching for the simulator.
///
/// On x86-64 the simulator switches with its own 14-instruction routine: it saves the six
/// callee-saved registers, swaps stack pointers and returns into the other fiber with `ret`.
/// Boost.Context's jump_fcontext leaves with an indirect `jmp` instead, so every switch leaves one
/// unmatched return-stack-buffer entry and the next `ret` of the resumed fiber mispredicts; it also
/// saves and reloads the x87 and SSE control words, which kernels never change. Both cost more than
/// the rest of a switch. Every fiber blocks at the same call site, so the `ret` here predicts
/// perfectly.
///
/// This is host (x86-64) assembly of the CPU simulator, not PTX: strata/arch remains the only
/// home of PTX. Other architectures use Boost.Context.
#pragma once

#include <cstddef>
#include <cstdint>

#if !defined(__x86_64__)
#include <boost/context/detail/fcontext.hpp>
#endif

namespace strata::sim::detail {

/// A suspended fiber: its saved stack pointer (x86-64) or its Boost.Context handle.
using Context = void*;

#if defined(__x86_64__)

extern "C" void strata_sim_context_switch(Context* save, Context to);
extern "C" void strata_sim_context_start();

// COMDAT sections: every translation unit that includes this header emits the routines and the
// linker keeps one copy.
__asm__(
    ".pushsection "
    ".text.strata_sim_context_switch,\"axG\",@progbits,strata_sim_context_switch,comdat\n"
    ".globl strata_sim_context_switch\n"
    ".hidden strata_sim_context_switch\n"
    ".type strata_sim_context_switch,@function\n"
    ".p2align 4\n"
    "strata_sim_context_switch:\n"  // rdi: Context* save, rsi: Context to
    "  .cfi_startproc\n"
    "  pushq %rbp\n"
    "  pushq %rbx\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n"
    "  popq %r14\n"
    "  popq %r13\n"
    "  popq %r12\n"
    "  popq %rbx\n"
    "  popq %rbp\n"
    "  ret\n"
    "  .cfi_endproc\n"
    ".size strata_sim_context_switch, .-strata_sim_context_switch\n"
    ".popsection\n"
    ".pushsection "
    ".text.strata_sim_context_start,\"axG\",@progbits,strata_sim_context_start,comdat\n"
    ".globl strata_sim_context_start\n"
    ".hidden strata_sim_context_start\n"
    ".type strata_sim_context_start,@function\n"
    ".p2align 4\n"
    "strata_sim_context_start:\n"  // first resumption of a fiber: r13 holds its entry function
    "  .cfi_startproc\n"
    "  .cfi_undefined rip\n"  // the bottom of the fiber's stack: unwinders stop here
    "  call *%r13\n"
    "  ud2\n"
    "  .cfi_endproc\n"
    ".size strata_sim_context_start, .-strata_sim_context_start\n"
    ".popsection\n");

/// Saves the running context into `*save` and resumes `to`; returns when resumed.
inline void context_switch(Context* save, Context to) {
  strata_sim_context_switch(save, to);
}

/// A new context on the stack of `size` bytes that ends at `stack_top`: its first resumption calls
/// `entry`, which must never return.
inline Context context_make(char* stack_top, size_t /*size*/, void (*entry)()) {
  auto top = reinterpret_cast<uintptr_t>(stack_top) & ~uintptr_t(15);
  auto* p = reinterpret_cast<void**>(top);
  *--p =
      reinterpret_cast<void*>(&strata_sim_context_start);  // `ret` target; rsp % 16 == 0 after it
  *--p = nullptr;                                          // rbp
  *--p = nullptr;                                          // rbx
  *--p = nullptr;                                          // r12
  *--p = reinterpret_cast<void*>(entry);                   // r13: called by the start routine
  *--p = nullptr;                                          // r14
  *--p = nullptr;                                          // r15
  return p;
}

#else  // Boost.Context

namespace bctx = boost::context::detail;

inline void context_boost_entry(bctx::transfer_t tr);
inline thread_local void (*g_context_entry)() = nullptr;

inline void context_switch(Context* save, Context to) {
  bctx::transfer_t tr = bctx::jump_fcontext(static_cast<bctx::fcontext_t>(to), save);
  *static_cast<Context*>(tr.data) = tr.fctx;
}

inline void context_boost_entry(bctx::transfer_t tr) {
  *static_cast<Context*>(tr.data) = tr.fctx;
  g_context_entry();
}

inline Context context_make(char* stack_top, size_t size, void (*entry)()) {
  g_context_entry = entry;  // the simulator has a single entry function
  return bctx::make_fcontext(stack_top, size, &context_boost_entry);
}

#endif

}  // namespace strata::sim::detail
