# The per-dtype translation units of the PAU and RPAU CUDA kernels, written
# into the build directory instead of being committed as eight near-identical
# files. One translation unit per (family, storage type) lets nvcc compile the
# eight instantiation sets in parallel; cuda/pau_launch.h declares the same set
# extern, so that no other translation unit compiles the kernels again.
#
# Used by cmake/cuda.cmake, and as a script by .ci/cuda_compile_and_emulate.sh,
# which compiles exactly these files without configuring a project:
#   cmake -DPAU_INSTANTIATIONS_DIR=<dir> -P cmake/cuda_instantiations.cmake

# Captured here: inside the function CMAKE_CURRENT_LIST_DIR is the caller's.
get_filename_component(_pau_kernels_header "${CMAKE_CURRENT_LIST_DIR}/../cuda/pau_kernels.cuh"
                       ABSOLUTE)

set(_pau_storage_float float)
set(_pau_storage_double double)
set(_pau_storage_half __half)
set(_pau_storage_bfloat16 __nv_bfloat16)
set(_pau_noisy_pau false)
set(_pau_noisy_rpau true)
set(_pau_operators_pau "pau::forward / pau::backward")
set(_pau_operators_rpau "pau::rpau_forward / pau::rpau_backward")

# Writes <dir>/{pau,rpau}_kernels_{float,double,half,bfloat16}.cu and sets
# out_var to their paths. file(CONFIGURE) rewrites a file only when its content
# changes, so a reconfigure does not recompile the kernels.
function(pau_write_cuda_instantiations dir out_var)
  set(_files "")
  foreach(family IN ITEMS pau rpau)
    foreach(dtype IN ITEMS float double half bfloat16)
      set(PAU_OPERATORS "${_pau_operators_${family}}")
      set(PAU_STORAGE "${_pau_storage_${dtype}}")
      set(PAU_NOISY "${_pau_noisy_${family}}")
      set(PAU_KERNELS_HEADER "${_pau_kernels_header}")
      set(_file "${dir}/${family}_kernels_${dtype}.cu")
      file(CONFIGURE OUTPUT "${_file}" CONTENT [=[
// Written by cmake/cuda_instantiations.cmake: the CUDA kernels of
// @PAU_OPERATORS@ for @PAU_STORAGE@ storage.
#include "@PAU_KERNELS_HEADER@"

namespace pau {
namespace cuda {
namespace detail {

PAU_CUDA_TYPED_LAUNCHERS(, @PAU_STORAGE@, @PAU_NOISY@)

}  // namespace detail
}  // namespace cuda
}  // namespace pau
]=] @ONLY)
      list(APPEND _files "${_file}")
    endforeach()
  endforeach()
  set(${out_var} "${_files}" PARENT_SCOPE)
endfunction()

if(CMAKE_SCRIPT_MODE_FILE STREQUAL CMAKE_CURRENT_LIST_FILE)
  if(NOT PAU_INSTANTIATIONS_DIR)
    message(FATAL_ERROR "usage: cmake -DPAU_INSTANTIATIONS_DIR=<dir> -P ${CMAKE_CURRENT_LIST_FILE}")
  endif()
  pau_write_cuda_instantiations("${PAU_INSTANTIATIONS_DIR}" _written)
endif()
