# Writes the file IN as a C array into OUT: gcd_ui_page (with a terminating NUL that
# gcd_ui_page_len does not count). Run as `cmake -DIN=... -DOUT=... -P embed.cmake`.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE "${OUT}" "/* Generated from ${IN} by embed.cmake: do not edit. */\n#include <stddef.h>\n\nconst unsigned char gcd_ui_page[] = {\n${bytes}0x00};\nconst size_t gcd_ui_page_len = ${len};\n")
