# Warnings are PRIVATE flags of our own targets, never leaked to users.
function(cairn_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wno-unused-parameter)
endfunction()
