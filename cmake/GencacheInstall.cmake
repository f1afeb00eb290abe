# gencache_install_configured(TEMPLATE OUTPUT DESTINATION): installs OUTPUT (a path in the build
# tree) into DESTINATION after writing it from TEMPLATE at install time, with the paths of that
# install (cmake/install_configure.cmake). `cmake --install build --prefix P` picks the prefix
# after configuring, so a file that names installed paths (gencache.pc, the systemd unit) cannot
# be written at configure time.
function(gencache_install_configured template output destination)
  install(CODE "
    set(GENCACHE_TEMPLATE \"${template}\")
    set(GENCACHE_OUTPUT \"${output}\")
    set(GENCACHE_LIBDIR \"${CMAKE_INSTALL_LIBDIR}\")
    set(GENCACHE_INCLUDEDIR \"${CMAKE_INSTALL_INCLUDEDIR}\")
    set(GENCACHE_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
    set(GENCACHE_DOCDIR \"${CMAKE_INSTALL_DOCDIR}\")
    set(PROJECT_VERSION \"${PROJECT_VERSION}\")
    include(\"${PROJECT_SOURCE_DIR}/cmake/install_configure.cmake\")")
  install(FILES ${output} DESTINATION ${destination})
endfunction()
