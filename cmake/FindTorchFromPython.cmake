# Finds Torch through CMAKE_PREFIX_PATH, or else through the python3 that
# imports torch. Sets TORCH_EXT_TORCH_LIB_DIR to the folder of libtorch.so.
find_package(Torch QUIET)
if(NOT Torch_FOUND)
  find_package(Python3 COMPONENTS Interpreter REQUIRED)
  execute_process(
    COMMAND ${Python3_EXECUTABLE} -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
    OUTPUT_VARIABLE _torch_ext_torch_prefix
    OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE _torch_ext_result)
  if(NOT _torch_ext_result EQUAL 0)
    message(FATAL_ERROR
      "torch_ext: Torch was not found. Pass -DCMAKE_PREFIX_PATH=<torch cmake prefix> "
      "or -DPython3_EXECUTABLE=<a python that imports torch>.")
  endif()
  list(APPEND CMAKE_PREFIX_PATH "${_torch_ext_torch_prefix}")
  find_package(Torch REQUIRED)
endif()
set(TORCH_EXT_TORCH_LIB_DIR "${TORCH_INSTALL_PREFIX}/lib")
