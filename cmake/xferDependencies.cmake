# Finds xfer's dependencies; used both by the source tree and by the installed xferConfig.cmake.
# Eigen, OpenMP and nlohmann_json ship CMake configs; stb (Debian's libstb-dev) ships a header
# directory and a compiled libstb, which we wrap in the imported target xfer::stb.
include(CMakeFindDependencyMacro)
find_dependency(Eigen3 3.3 NO_MODULE)
find_dependency(OpenMP)
find_dependency(nlohmann_json 3)

if(NOT TARGET xfer::stb)
  find_path(XFER_STB_INCLUDE_DIR stb_image.h PATH_SUFFIXES stb)
  find_library(XFER_STB_LIBRARY NAMES stb)
  if(NOT XFER_STB_INCLUDE_DIR)
    message(FATAL_ERROR "xfer: stb_image.h not found (Debian: apt-get install libstb-dev)")
  endif()
  add_library(xfer::stb INTERFACE IMPORTED)
  set_target_properties(xfer::stb PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${XFER_STB_INCLUDE_DIR}")
  if(XFER_STB_LIBRARY)
    # The compiled implementation: no TU needs STB_IMAGE_IMPLEMENTATION.
    set_property(TARGET xfer::stb PROPERTY INTERFACE_LINK_LIBRARIES "${XFER_STB_LIBRARY}")
  else()
    # Header-only stb: xfer compiles the implementation into the TU that defines XFER_STB_IMPLEMENTATION.
    set_property(TARGET xfer::stb PROPERTY INTERFACE_COMPILE_DEFINITIONS XFER_STB_HEADER_ONLY)
  endif()
endif()
