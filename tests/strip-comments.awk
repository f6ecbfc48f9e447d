# SPDX-License-Identifier: MIT
# Prints C source without its /* */ and // comments (line structure kept).
# String literals are not parsed: good enough for the project's own files.
{
	line = $0
	out = ""
	while (line != "") {
		if (in_comment) {
			i = index(line, "*/")
			if (!i) {
				line = ""
				break
			}
			line = substr(line, i + 2)
			in_comment = 0
		} else {
			i = index(line, "/*")
			j = index(line, "//")
			if (j && (!i || j < i)) {
				out = out substr(line, 1, j - 1)
				line = ""
				break
			}
			if (!i) {
				out = out line
				line = ""
				break
			}
			out = out substr(line, 1, i - 1) " "
			line = substr(line, i + 2)
			in_comment = 1
		}
	}
	print out
}
