module nolibc

go 1.19
