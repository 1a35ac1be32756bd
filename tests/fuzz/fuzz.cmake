# fuzz.cmake - libFuzzer targets for every reader of untrusted bytes
# (tests/fuzz/README.md). Included from the top-level CMakeLists.txt, after
# the dt_* libraries are defined:
#
#     include(tests/fuzz/fuzz.cmake)
#
# With -DDTRAIN_FUZZ=ON and CMAKE_C_COMPILER=clang, every dtrain target is
# compiled with -fsanitize=fuzzer-no-link,address,undefined (so libFuzzer
# sees the coverage of the libraries) and four fuzzers are built:
#   fuzz_config      dt_config_load (+ --set) and the write/reload identity
#   fuzz_idx         dt_idx_load on raw and gzip IDX files
#   fuzz_checkpoint  dt_ckpt_read / dt_ckpt_resume
#   fuzz_safetensors dt_st_open / dt_st_check / dt_st_read_f32 / dt_st_load
# plus fuzz_gen_seeds, the program that wrote the committed seed corpora.
# tests/fuzz/run.sh configures, builds and runs them. It passes this file as
# CMAKE_PROJECT_INCLUDE too (then it runs before dtrain_flags exists, so the
# work is deferred to the end of the top-level directory), which makes the
# include line above optional; the include guard makes both at once safe.
include_guard(GLOBAL)
set(_dt_fuzz_dir ${CMAKE_CURRENT_LIST_DIR})
option(DTRAIN_FUZZ "Build the libFuzzer targets (needs clang)" OFF)

function(_dt_fuzz_target name)
  add_executable(${name} ${_dt_fuzz_dir}/${name}.c)
  target_link_libraries(${name} PRIVATE ${ARGN})
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
endfunction()

function(_dt_fuzz_setup)
  if(NOT DTRAIN_FUZZ)
    return()
  endif()
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "DTRAIN_FUZZ needs clang (cmake -DCMAKE_C_COMPILER=clang ...); "
                        "the compiler is ${CMAKE_C_COMPILER_ID}")
  endif()
  # Every dtrain target: coverage instrumentation without libFuzzer's main,
  # ASan + UBSan, any UB fatal so that the fuzzer reports it as a crash.
  target_compile_options(dtrain_flags INTERFACE -fsanitize=fuzzer-no-link,address,undefined
                         -fno-sanitize-recover=all -fno-omit-frame-pointer -g)
  target_link_options(dtrain_flags INTERFACE -fsanitize=address,undefined)

  _dt_fuzz_target(fuzz_config dt_config)
  _dt_fuzz_target(fuzz_idx dt_data ZLIB::ZLIB)
  _dt_fuzz_target(fuzz_checkpoint dt_checkpoint)
  _dt_fuzz_target(fuzz_safetensors dt_safetensors)

  # Writes the generated seeds (IDX inputs, checkpoints) of tests/fuzz/corpus.
  add_executable(fuzz_gen_seeds ${_dt_fuzz_dir}/gen_seeds.c)
  target_link_libraries(fuzz_gen_seeds PRIVATE dt_checkpoint ZLIB::ZLIB)
  set_target_properties(fuzz_gen_seeds PROPERTIES RUNTIME_OUTPUT_DIRECTORY
                        ${CMAKE_BINARY_DIR}/fuzz)
endfunction()

if(TARGET dtrain_flags)
  _dt_fuzz_setup()
else() # included as CMAKE_PROJECT_INCLUDE: the dt_* targets come later
  cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL _dt_fuzz_setup)
endif()
