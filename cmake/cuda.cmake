# CUDA kernels: built when PAU_CUDA is ON, or AUTO and both a CUDA toolkit and a
# CUDA-enabled torch are present. A CPU-only torch gives a CPU-only build with
# no error.
#
# Included from the top-level CMakeLists.txt after find_package(Torch). A CUDA
# torch has by then enabled the CUDA language itself (Caffe2's
# public/cuda.cmake), set CMAKE_CUDA_STANDARD and appended its own -gencode
# flags (TORCH_CUDA_ARCH_LIST or the GPUs it sees) to CMAKE_CUDA_FLAGS.
# enable_language() must run at directory scope, so the decision is made here
# when the file is included, and pau_add_cuda_sources() only adds sources.

if(NOT PAU_CUDA MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "pau: PAU_CUDA must be AUTO, ON or OFF, got '${PAU_CUDA}'")
endif()

set(PAU_WITH_CUDA OFF)
set(_pau_cuda_reason "PAU_CUDA=OFF")
if(NOT PAU_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  if(NOT CMAKE_CUDA_COMPILER)
    set(_pau_cuda_reason "no CUDA compiler (nvcc) found")
  elseif(NOT TORCH_CUDA_LIBRARIES)
    # TorchConfig.cmake sets TORCH_CUDA_LIBRARIES only for a CUDA build of torch.
    set(_pau_cuda_reason "torch was built without CUDA")
  else()
    set(PAU_WITH_CUDA ON)
  endif()
  if(PAU_CUDA STREQUAL "ON" AND NOT PAU_WITH_CUDA)
    message(FATAL_ERROR "pau: PAU_CUDA=ON but ${_pau_cuda_reason}; use PAU_CUDA=AUTO or OFF "
                        "for a CPU-only build")
  endif()
endif()

# The architectures, in CMake's CUDA_ARCHITECTURES syntax: PAU_CUDA_ARCHITECTURES
# if given, else torch's TORCH_CUDA_ARCH_LIST environment variable (what
# torch.utils.cpp_extension builds honour, e.g. "8.0;9.0+PTX" or "8.0 9.0a"),
# else sm_80 and sm_90 (A100, H100/H200) with PTX for newer GPUs.
function(pau_arch_list_to_cmake torch_list out_var)
  string(REPLACE " " ";" _entries "${torch_list}")
  set(_archs "")
  foreach(_entry IN LISTS _entries)
    if(_entry STREQUAL "")
      continue()
    endif()
    if(NOT _entry MATCHES "^([0-9]+)\\.([0-9]+)([a-z]?)(\\+PTX)?$")
      message(FATAL_ERROR "pau: cannot read '${_entry}' of TORCH_CUDA_ARCH_LIST='${torch_list}'; "
                          "use numbers such as 8.0;9.0+PTX or set PAU_CUDA_ARCHITECTURES")
    endif()
    set(_arch "${CMAKE_MATCH_1}${CMAKE_MATCH_2}${CMAKE_MATCH_3}")
    # +PTX: machine code and PTX (CMake's plain number); else machine code only.
    if(CMAKE_MATCH_4)
      list(APPEND _archs "${_arch}")
    else()
      list(APPEND _archs "${_arch}-real")
    endif()
  endforeach()
  set(${out_var} "${_archs}" PARENT_SCOPE)
endfunction()

if(PAU_WITH_CUDA)
  if(PAU_CUDA_ARCHITECTURES)
    set(_pau_archs_from "PAU_CUDA_ARCHITECTURES")
  elseif(NOT "$ENV{TORCH_CUDA_ARCH_LIST}" STREQUAL "")
    pau_arch_list_to_cmake("$ENV{TORCH_CUDA_ARCH_LIST}" PAU_CUDA_ARCHITECTURES)
    set(_pau_archs_from "TORCH_CUDA_ARCH_LIST=$ENV{TORCH_CUDA_ARCH_LIST}")
  else()
    set(PAU_CUDA_ARCHITECTURES "80-real;90")
    set(_pau_archs_from "default")
  endif()
  if(NOT PAU_CUDA_ARCHITECTURES)
    message(FATAL_ERROR "pau: no CUDA architectures (${_pau_archs_from}); e.g. -DPAU_CUDA_ARCHITECTURES=\"80;90\"")
  endif()
  # Only consulted if the CUDA language is not enabled yet; the target property
  # below is what counts.
  if(NOT CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES ${PAU_CUDA_ARCHITECTURES})
  endif()
  enable_language(CUDA)
  # PAU_CUDA_ARCHITECTURES decides the architectures: drop the -gencode flags
  # torch appended, which would otherwise add (or duplicate) architectures.
  string(REGEX REPLACE "-gencode[ =]+arch=[^ ]+" "" CMAKE_CUDA_FLAGS "${CMAKE_CUDA_FLAGS}")
endif()

include(${CMAKE_CURRENT_LIST_DIR}/cuda_instantiations.cmake)

# Compiles cuda/*.cu and the per-dtype kernel instantiations into `target` when
# the CUDA build is on.
function(pau_add_cuda_sources target)
  if(NOT PAU_WITH_CUDA)
    message(STATUS "pau: CUDA kernels disabled (${_pau_cuda_reason})")
    return()
  endif()
  file(GLOB _cuda_sources CONFIGURE_DEPENDS "${PROJECT_SOURCE_DIR}/cuda/*.cu")
  if(NOT _cuda_sources)
    message(FATAL_ERROR "pau: CUDA build requested but there are no sources in cuda/")
  endif()
  pau_write_cuda_instantiations("${CMAKE_CURRENT_BINARY_DIR}/cuda_instantiations" _instantiations)
  target_sources(${target} PRIVATE ${_cuda_sources} ${_instantiations})
  set_target_properties(${target} PROPERTIES
    CUDA_ARCHITECTURES "${PAU_CUDA_ARCHITECTURES}"
    CUDA_STANDARD ${CMAKE_CXX_STANDARD}
    CUDA_STANDARD_REQUIRED ON
    CUDA_EXTENSIONS OFF
    # The same shared CUDA runtime as torch: one runtime instance per process.
    CUDA_RUNTIME_LIBRARY Shared)
  # -lineinfo: source lines for compute-sanitizer and Nsight without slowing
  # the kernels. The __CUDA_NO_HALF* definitions are the ones torch's
  # extensions use (no implicit __half conversions next to c10::Half); the
  # kernels only use explicit conversion intrinsics.
  target_compile_options(${target} PRIVATE
    "$<$<COMPILE_LANGUAGE:CUDA>:-O3;-lineinfo;--expt-relaxed-constexpr>"
    "$<$<COMPILE_LANGUAGE:CUDA>:-D__CUDA_NO_HALF_OPERATORS__;-D__CUDA_NO_HALF_CONVERSIONS__>"
    "$<$<COMPILE_LANGUAGE:CUDA>:-D__CUDA_NO_BFLOAT16_CONVERSIONS__;-D__CUDA_NO_HALF2_OPERATORS__>")
  # c10_cuda: stream, device guard, error checks; the glue uses nothing else of
  # torch's CUDA side. Not ${TORCH_CUDA_LIBRARIES}: that adds libnvrtc, which
  # the kernels never call and a plain toolkit install may lack (CUDA torch
  # wheels ship their own in nvidia/cu13/lib), failing the configure step.
  target_link_libraries(${target} PRIVATE c10_cuda)
  target_compile_definitions(${target} PRIVATE PAU_WITH_CUDA)
  message(STATUS "pau: CUDA kernels enabled for architectures ${PAU_CUDA_ARCHITECTURES} "
                 "(${_pau_archs_from})")
endfunction()
