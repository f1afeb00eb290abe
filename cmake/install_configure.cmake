# Runs at install time (gencache_install_configured(), cmake/GencacheInstall.cmake): writes a file from its template with
# the paths of this install, so what `cmake --install build --prefix P` installs names P, not the
# prefix the build was configured with. In:
#   GENCACHE_TEMPLATE, GENCACHE_OUTPUT   the template and the file to write
#   GENCACHE_LIBDIR, GENCACHE_INCLUDEDIR, GENCACHE_BINDIR, GENCACHE_DOCDIR   GNUInstallDirs values
#     (relative to the prefix, or absolute)
#   CMAKE_INSTALL_PREFIX   set by cmake --install to the prefix of this install
# Out, for @VAR@ in the template: GENCACHE_PC_PREFIX, GENCACHE_PC_LIBDIR, GENCACHE_PC_INCLUDEDIR,
# GENCACHE_INSTALL_FULL_BINDIR, GENCACHE_INSTALL_FULL_DOCDIR.
function(gencache_full_path out dir)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "${CMAKE_INSTALL_PREFIX}/${dir}" PARENT_SCOPE)
  endif()
endfunction()

set(GENCACHE_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
# Relative directories are written as ${prefix}/..., as pkg-config users expect
# (pkg-config --define-prefix and the like rewrite the prefix line only).
if(IS_ABSOLUTE "${GENCACHE_LIBDIR}")
  set(GENCACHE_PC_LIBDIR "${GENCACHE_LIBDIR}")
else()
  set(GENCACHE_PC_LIBDIR "\${prefix}/${GENCACHE_LIBDIR}")
endif()
if(IS_ABSOLUTE "${GENCACHE_INCLUDEDIR}")
  set(GENCACHE_PC_INCLUDEDIR "${GENCACHE_INCLUDEDIR}")
else()
  set(GENCACHE_PC_INCLUDEDIR "\${prefix}/${GENCACHE_INCLUDEDIR}")
endif()
gencache_full_path(GENCACHE_INSTALL_FULL_BINDIR "${GENCACHE_BINDIR}")
gencache_full_path(GENCACHE_INSTALL_FULL_DOCDIR "${GENCACHE_DOCDIR}")
configure_file("${GENCACHE_TEMPLATE}" "${GENCACHE_OUTPUT}" @ONLY)
