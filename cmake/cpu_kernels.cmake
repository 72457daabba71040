# The CPU kernels are compiled once per instruction set from one source; each
# copy gets its ISA flags and CPU_CAPABILITY (the namespace at::vec and our
# kernels use), and dispatch.cpp picks one at run time. Never -march=native.
set(PAU_CPU_KERNEL_SOURCES "")
set(PAU_CPU_KERNEL_DEFINITIONS "")
set(_pau_isas DEFAULT)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  list(APPEND _pau_isas AVX2 AVX512)
endif()
set(_pau_flags_DEFAULT "")
set(_pau_flags_AVX2 "-mavx2;-mfma;-mf16c")
set(_pau_flags_AVX512 "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mfma;-mf16c")
foreach(isa IN LISTS _pau_isas)
  set(_src "${CMAKE_CURRENT_BINARY_DIR}/isa/pau_kernel_${isa}.cpp")
  # file(CONFIGURE) rewrites only on change, so rebuilds stay incremental.
  file(CONFIGURE OUTPUT "${_src}" CONTENT "#include \"cpu/pau_kernel.cpp\"\n")
  set_source_files_properties("${_src}" PROPERTIES
    COMPILE_OPTIONS "${_pau_flags_${isa}}"
    COMPILE_DEFINITIONS "CPU_CAPABILITY=${isa};CPU_CAPABILITY_${isa}")
  list(APPEND PAU_CPU_KERNEL_SOURCES "${_src}")
  if(NOT isa STREQUAL "DEFAULT")
    list(APPEND PAU_CPU_KERNEL_DEFINITIONS "PAU_HAVE_${isa}")
  endif()
endforeach()
