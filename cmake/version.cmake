# Writes OUT (a C++ source defining hearth::build_commit()) from `git describe` of SOURCE_DIR.
# Run at every build; configure_file rewrites OUT only when the commit changed, so nothing else
# is rebuilt.
execute_process(COMMAND git -C "${SOURCE_DIR}" describe --always --dirty --abbrev=12
                OUTPUT_VARIABLE HEARTH_COMMIT OUTPUT_STRIP_TRAILING_WHITESPACE
                ERROR_QUIET RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR HEARTH_COMMIT STREQUAL "")
  set(HEARTH_COMMIT "unknown")
endif()
file(WRITE "${OUT}.in" "#include \"hearth/core/version.hpp\"\n\nnamespace hearth {\n\nconst char* build_commit() {\n  return \"@HEARTH_COMMIT@\";\n}\n\n}  // namespace hearth\n")
configure_file("${OUT}.in" "${OUT}" @ONLY)
