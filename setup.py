import glob
import os

from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = "torch_ext/csrc"

# The library is every source under torch_ext/csrc but the Python module's
# (torch_ext/csrc/python), as CMakeLists.txt globs them: one library, shared
# by Python and C++ users alike.
ALL_SOURCES = glob.glob(f"{CSRC}/**/*.cpp", recursive=True)
PYTHON_SOURCES = sorted(path for path in ALL_SOURCES if path.startswith(f"{CSRC}/python/"))
CORE_SOURCES = sorted(set(ALL_SOURCES) - set(PYTHON_SOURCES))
COMPILE_ARGS = ["-O2", "-fvisibility=hidden", "-fvisibility-inlines-hidden"]
INCLUDE_DIRS = [os.path.join(ROOT, "include"), ROOT]
# An editable install copies lib/libtorch_ext.so into the source tree, into a
# folder that git does not keep (it holds only ignored files).
os.makedirs(os.path.join(ROOT, "torch_ext", "lib"), exist_ok=True)


class BuildLibraryFirst(BuildExtension):
    """Builds lib/libtorch_ext.so, then links the Python module against it."""

    def build_extension(self, ext):
        if ext.name == "torch_ext._C":
            core = self.get_ext_fullpath("torch_ext.lib.libtorch_ext")
            ext.library_dirs.append(os.path.dirname(core))
        super().build_extension(ext)


setup(
    name="torch_ext",
    version="0.1.0",
    description="wrap_future and on_complete on c10::ivalue::Future, for checkpointing",
    packages=find_packages(include=["torch_ext", "torch_ext.*"]),
    package_data={"torch_ext": ["py.typed"]},
    ext_modules=[
        CppExtension(
            "torch_ext.lib.libtorch_ext",
            CORE_SOURCES,
            include_dirs=INCLUDE_DIRS,
            extra_compile_args=COMPILE_ARGS,
            define_macros=[("TORCH_EXT_BUILDING_LIBRARY", None)],
            libraries=["isal"],
            # The soname lets a process that already loaded the C++ package's
            # libtorch_ext.so reuse it instead of registering the ops twice.
            extra_link_args=["-Wl,-soname,libtorch_ext.so"],
        ),
        CppExtension(
            "torch_ext._C",
            PYTHON_SOURCES,
            include_dirs=INCLUDE_DIRS,
            extra_compile_args=COMPILE_ARGS,
            libraries=["torch_ext"],
            extra_link_args=["-Wl,-rpath,$ORIGIN/lib"],
        ),
    ],
    cmdclass={"build_ext": BuildLibraryFirst.with_options(no_python_abi_suffix=True)},
    python_requires=">=3.10",
    zip_safe=False,
)
