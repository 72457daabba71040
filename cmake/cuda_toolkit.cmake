# Where the CUDA toolkit is, decided before find_package(Torch): a CUDA build of
# torch runs its bundled FindCUDA there, which takes the toolkit root to be the
# folder above the first nvcc on PATH. Where that nvcc is a wrapper script or a
# link elsewhere (this project's CI machines have /usr/local/bin/nvcc exec'ing
# /usr/local/cuda-13.0/bin/nvcc), that folder has no CUDA headers or libraries
# and configuring fails with "Your installed Caffe2 version uses CUDA but I
# cannot find the CUDA libraries". nvcc itself knows its root (TOP= in its
# --dryrun output), so ask it.
#
# Nothing is changed when the caller chose already: -DCUDA_TOOLKIT_ROOT_DIR, or
# the environment variables FindCUDA reads (CUDA_TOOLKIT_ROOT, CUDA_PATH,
# CUDA_BIN_PATH). CUDA_HOME, which torch.utils.cpp_extension reads but FindCUDA
# does not, is taken as the root when set.
#
# Included by the top-level CMakeLists.txt and, installed beside it, by
# pauConfig.cmake: a C++ program that finds pau finds the same torch.

function(pau_locate_cuda_toolkit)
  if(PAU_CUDA STREQUAL "OFF" OR CUDA_TOOLKIT_ROOT_DIR)
    return()
  endif()
  foreach(_variable IN ITEMS CUDA_TOOLKIT_ROOT CUDA_PATH CUDA_BIN_PATH)
    if(NOT "$ENV{${_variable}}" STREQUAL "")
      return()
    endif()
  endforeach()

  set(_root "")
  if(NOT "$ENV{CUDA_HOME}" STREQUAL "")
    set(_root "$ENV{CUDA_HOME}")
    set(_from "CUDA_HOME")
  else()
    if(CMAKE_CUDA_COMPILER)
      set(_pau_nvcc "${CMAKE_CUDA_COMPILER}")
    elseif(NOT "$ENV{CUDACXX}" STREQUAL "")
      set(_pau_nvcc "$ENV{CUDACXX}")
    else()
      find_program(_pau_nvcc nvcc)
    endif()
    if(NOT _pau_nvcc)
      return()  # no toolkit: cuda.cmake reports it (or torch's config does)
    endif()
    execute_process(
      COMMAND "${_pau_nvcc}" --dryrun -x cu -c /dev/null -o /dev/null
      OUTPUT_VARIABLE _out ERROR_VARIABLE _out RESULT_VARIABLE _result)
    if(_result EQUAL 0 AND _out MATCHES "#\\$ TOP=([^\r\n]*)")
      get_filename_component(_root "${CMAKE_MATCH_1}" REALPATH)
      set(_from "${_pau_nvcc} --dryrun")
    endif()
  endif()

  if(_root STREQUAL "" OR NOT EXISTS "${_root}/include/cuda_runtime_api.h")
    message(STATUS "pau: could not locate the CUDA toolkit's root (tried '${_root}'); "
                   "set CUDA_TOOLKIT_ROOT_DIR if configuring fails")
    return()
  endif()
  set(CUDA_TOOLKIT_ROOT_DIR "${_root}" CACHE PATH "CUDA toolkit root (pau: from ${_from})")
  if(NOT CMAKE_CUDA_COMPILER AND "$ENV{CUDACXX}" STREQUAL "" AND EXISTS "${_root}/bin/nvcc")
    set(CMAKE_CUDA_COMPILER "${_root}/bin/nvcc" CACHE FILEPATH "CUDA compiler (pau: ${_from})")
  endif()
  message(STATUS "pau: CUDA toolkit root ${_root} (from ${_from})")
endfunction()

pau_locate_cuda_toolkit()
