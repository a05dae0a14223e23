# CPack: a .deb with the GUI, the CLI, the desktop entry and the AppStream
# metadata. `cmake --build build --target package`.
set(CPACK_PACKAGE_NAME crucible)
set(CPACK_PACKAGE_VENDOR "Crucible")
set(CPACK_PACKAGE_CONTACT "Crucible maintainers")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_DESCRIPTION}")
set(CPACK_GENERATOR DEB)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)
include(CPack)
