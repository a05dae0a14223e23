# Installation and CPack: a .deb with the GUI, the CLI, the CUDA backend
# plugin (when built), the desktop entry, the AppStream metadata, the icon and
# the copyright file. `cmake --build build --target package`.
#
# The package depends on no CUDA library: the programs load the CUDA backend
# with dlopen (kernels/cuda_plugin.h) and run on the CPU where the CUDA
# runtime is missing. tests/packaging/tst_deb_without_cuda.cpp installs the
# package into a scratch folder and starts it with the CUDA libraries hidden.
include(GNUInstallDirs)

set(CRUCIBLE_MAINTAINER "Crucible maintainers <crucible@users.noreply.github.com>")
set(CRUCIBLE_HOMEPAGE "https://github.com/crucible/crucible")
# Debian keeps it under the package name.
install(FILES ${PROJECT_SOURCE_DIR}/packaging/copyright DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/crucible)

# ui/CMakeLists.txt sets CRUCIBLE_APP_ID: the desktop entry, the metadata and
# the icon are installed under the id the app reports to the desktop.
if(CRUCIBLE_BUILD_GUI)
  install(FILES ${PROJECT_SOURCE_DIR}/packaging/${CRUCIBLE_APP_ID}.desktop
          DESTINATION ${CMAKE_INSTALL_DATADIR}/applications)
  install(FILES ${PROJECT_SOURCE_DIR}/packaging/${CRUCIBLE_APP_ID}.metainfo.xml
          DESTINATION ${CMAKE_INSTALL_DATADIR}/metainfo)
  install(FILES ${PROJECT_SOURCE_DIR}/resources/icons/crucible.svg
          DESTINATION ${CMAKE_INSTALL_DATADIR}/icons/hicolor/scalable/apps
          RENAME ${CRUCIBLE_APP_ID}.svg)
endif()

# The PyTorch peers `crucible-cli bench ... --peer` runs (found next to the
# binary under ../share/crucible/peers).
file(GLOB CRUCIBLE_PEER_SCRIPTS ${PROJECT_SOURCE_DIR}/tests/peers/torch_*.py)
install(FILES ${CRUCIBLE_PEER_SCRIPTS} DESTINATION ${CMAKE_INSTALL_DATADIR}/crucible/peers)

set(CPACK_PACKAGE_NAME crucible)
set(CPACK_PACKAGE_VENDOR "Crucible")
set(CPACK_PACKAGE_CONTACT "${CRUCIBLE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CRUCIBLE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "${CRUCIBLE_HOMEPAGE}")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_PACKAGE_DESCRIPTION
    "Train LLaMA-style language models from scratch on your own text and watch them learn: live charts of loss, learning rate, gradient norm, throughput, MFU and memory; AdamW and Muon; a tokenizer preview; every run kept and comparable. Includes crucible-cli, the command-line twin for servers and scripts.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_GENERATOR DEB)
# Library dependencies from the binaries. The CUDA plugin's libcudart and
# libcublas come with NVIDIA's toolkit or runtime, which no Debian package
# provides where it was installed from NVIDIA (dpkg-shlibdeps then adds
# nothing for them): the package installs and starts without CUDA.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
if(CRUCIBLE_BUILD_GUI)
  # Qt loads these at run time, so shlibdeps cannot see them: the platform
  # plugins and the desktop icon theme machinery.
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "qt6-qpa-plugins")
  set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "hicolor-icon-theme")
endif()
include(CPack)
