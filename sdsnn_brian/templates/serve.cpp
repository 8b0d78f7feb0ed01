// sdsnn_brian: the part of the serving mode (main --serve) that does not depend on the network;
// sdsnn_brian/codegen.py puts it, inside namespace sdsnn_serve, into the generated main.cpp.
// results files mapped into memory: a 64-byte header (the payload's bytes as uint64), then
// the payload; a file only grows, so its pages stay mapped from one request to the next
struct Mapped { int fd = -1; char* base = 0; size_t cap = 0; };
static char* reserve(Mapped& f, const std::string& path, size_t bytes)
{
    const size_t need = bytes + 64;
    if (f.fd < 0)
        f.fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (f.fd < 0)
    {
        std::cerr << "sdsnn_serve: cannot open " << path << std::endl;
        exit(1);
    }
    if (need > f.cap)
    {
        size_t cap = std::max(need, 2 * f.cap);
        cap = (cap + 4095) / 4096 * 4096;
        if (f.base)
            munmap(f.base, f.cap);
        void* base = MAP_FAILED;
        if (ftruncate(f.fd, cap) == 0)
            base = mmap(0, cap, PROT_READ | PROT_WRITE, MAP_SHARED, f.fd, 0);
        if (base == MAP_FAILED)
        {
            std::cerr << "sdsnn_serve: cannot map " << cap << " bytes of " << path << std::endl;
            exit(1);
        }
        f.base = static_cast<char*>(base);
        f.cap = cap;
    }
    *reinterpret_cast<uint64_t*>(f.base) = bytes;
    return f.base + 64;
}
template<class T> void publish(Mapped& f, const std::string& path, const std::vector<T>& v)
{
    char* out = reserve(f, path, v.size() * sizeof(T));
    if (!v.empty())
        memcpy(out, &v[0], v.size() * sizeof(T));
}
// the first `rows` rows of a 2-D recording (all of them by default)
template<class T> void publish(Mapped& f, const std::string& path, DynamicArray2D<T>& a, size_t rows = (size_t)-1)
{
    const size_t row = a.m * sizeof(T);
    const int n_rows = (int)std::min(rows, (size_t)a.n);
    char* out = reserve(f, path, n_rows * row);
    if (row)
        for (int n = 0; n < n_rows; n++)
            memcpy(out + n * row, &a(n, 0), row);
}
// one request per line: name=file arguments separated by tabs; false at the end of the input
bool next_request(std::vector<std::string>& request)
{
    std::string line;
    if (!std::getline(std::cin, line))
        return false;
    request.clear();
    std::istringstream fields(line);
    std::string field;
    while (std::getline(fields, field, '\t'))
        if (!field.empty())
            request.push_back(field);
    return true;
}
