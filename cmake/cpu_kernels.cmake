# CPU kernels are compiled once per instruction set from one source: each copy
# gets its ISA flags and CPU_CAPABILITY (the namespace at::vec and our kernels
# live in), and cpp/cpu/dispatch.cpp picks one table at run time. Never
# -march=native: the wheel must run on any x86-64 CPU.
set(PAU_CPU_KERNEL_SOURCES "")
set(PAU_CPU_KERNEL_DEFINITIONS "")
set(PAU_CPU_ISAS DEFAULT)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  list(APPEND PAU_CPU_ISAS AVX2 AVX512)
  list(APPEND PAU_CPU_KERNEL_DEFINITIONS PAU_HAVE_AVX2 PAU_HAVE_AVX512)
endif()
set(_pau_flags_DEFAULT "")
set(_pau_flags_AVX2 "-mavx2;-mfma;-mf16c")
# GCC 12's AVX-512 headers build "undefined" vectors by self-initialisation
# (__m512i __Y = __Y in _mm512_undefined_epi32), which -Wall reports as
# maybe-uninitialized wherever at::vec's int32 shifts are inlined: hundreds of
# false positives that would fail a PAU_WARNINGS_AS_ERRORS build.
set(_pau_flags_AVX512 "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mfma;-mf16c;-Wno-maybe-uninitialized")

# Adds one copy per ISA of `source` (relative to cpp/) to PAU_CPU_KERNEL_SOURCES.
function(pau_add_cpu_kernel source)
  get_filename_component(_name "${source}" NAME_WE)
  set(_sources ${PAU_CPU_KERNEL_SOURCES})
  foreach(isa IN LISTS PAU_CPU_ISAS)
    set(_src "${CMAKE_CURRENT_BINARY_DIR}/isa/${_name}_${isa}.cpp")
    # file(CONFIGURE) rewrites only on change, so rebuilds stay incremental.
    file(CONFIGURE OUTPUT "${_src}" CONTENT "#include \"${source}\"\n")
    set_source_files_properties("${_src}" PROPERTIES
      COMPILE_OPTIONS "${_pau_flags_${isa}}"
      COMPILE_DEFINITIONS "CPU_CAPABILITY=${isa};CPU_CAPABILITY_${isa}")
    list(APPEND _sources "${_src}")
  endforeach()
  set(PAU_CPU_KERNEL_SOURCES ${_sources} PARENT_SCOPE)
endfunction()
