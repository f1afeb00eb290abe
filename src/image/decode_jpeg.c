/*
 * decode_jpeg.c: JPEG through libjpeg-turbo with the library's defaults (islow IDCT, fancy
 * upsampling), gray to 1 channel and colour to RGB, the choices Pillow makes, so the pixels (and
 * the perceptual hashes of them) agree with Pillow's. CMYK and YCCK are refused. libjpeg reports
 * errors by longjmp; locals changed after setjmp are volatile. A truncated file, which libjpeg
 * would only warn about and pad with gray, is an error here: a cache must not key on pixels the
 * file does not have.
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#include "image.h"

/* More scans than any real encoder writes; progressive files with thousands of tiny scans are a
 * known way to burn CPU. */
#define MAX_SCANS 1000

typedef struct jpeg_err {
    struct jpeg_error_mgr mgr; /* first: libjpeg casts cinfo->err to this */
    jmp_buf jmp;
    int code; /* GENCACHE_E* reported by the longjmp */
} jpeg_err;

static void error_exit(j_common_ptr cinfo)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    longjmp(e->jmp, 1);
}

static void emit_message(j_common_ptr cinfo, int level)
{
    jpeg_err *e = (jpeg_err *)cinfo->err;
    if (level >= 0)
        return; /* trace messages */
    int code = e->mgr.msg_code;
    if (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER) {
        e->code = GENCACHE_EPARSE;
        longjmp(e->jmp, 1);
    }
    e->mgr.num_warnings++;
}

static void output_message(j_common_ptr cinfo)
{
    (void)cinfo; /* never print to stderr from a library */
}

static void progress(j_common_ptr cinfo)
{
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > MAX_SCANS) {
        jpeg_err *e = (jpeg_err *)cinfo->err;
        e->code = GENCACHE_ELIMIT;
        longjmp(e->jmp, 1);
    }
}

int gencache__image_decode_jpeg(const unsigned char *data, size_t size,
                                const gencache_image_limits *limits, gencache_image **out)
{
    *out = NULL;
    struct jpeg_decompress_struct cinfo;
    jpeg_err err;
    struct jpeg_progress_mgr prog;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = error_exit;
    err.mgr.emit_message = emit_message;
    err.mgr.output_message = output_message;
    err.code = GENCACHE_EPARSE;
    gencache_image *volatile img = NULL;

    if (setjmp(err.jmp)) {
        jpeg_destroy_decompress(&cinfo);
        gencache_image_free(img);
        return err.code;
    }
    jpeg_create_decompress(&cinfo);
    /* libjpeg's own allocations (coefficient buffers of progressive files) stay under the limit:
     * the no-backing-store memory manager fails cleanly past it. */
    cinfo.mem->max_memory_to_use =
        (long)(limits->max_bytes > 0x7fffffff ? 0x7fffffff : limits->max_bytes);
    memset(&prog, 0, sizeof prog);
    prog.progress_monitor = progress;
    cinfo.progress = &prog;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    if (jpeg_read_header(&cinfo, TRUE) != JPEG_HEADER_OK)
        longjmp(err.jmp, 1);

    uint32_t channels;
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
        cinfo.out_color_space = JCS_GRAYSCALE;
        channels = 1;
        break;
    case JCS_YCbCr:
    case JCS_RGB:
        cinfo.out_color_space = JCS_RGB;
        channels = 3;
        break;
    default:
        err.code = GENCACHE_EUNSUPPORTED;
        longjmp(err.jmp, 1);
    }
    if (cinfo.image_width > limits->max_width || cinfo.image_height > limits->max_height ||
        (uint64_t)cinfo.image_width * cinfo.image_height > limits->max_pixels) {
        err.code = GENCACHE_ELIMIT;
        longjmp(err.jmp, 1);
    }
    jpeg_start_decompress(&cinfo);
    if ((uint32_t)cinfo.output_components != channels)
        longjmp(err.jmp, 1);
    gencache_image *im;
    int rc =
        gencache__image_alloc(limits, cinfo.output_width, cinfo.output_height, channels, 8, &im);
    if (rc != GENCACHE_OK) {
        err.code = rc;
        longjmp(err.jmp, 1);
    }
    img = im;
    img->format = GENCACHE_IMAGE_JPEG;
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = img->pixels + (size_t)cinfo.output_scanline * img->stride;
        if (jpeg_read_scanlines(&cinfo, &row, 1) != 1)
            longjmp(err.jmp, 1);
    }
    /* Reading to the end also catches truncation inside the last scan of a progressive file. */
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    *out = img;
    return GENCACHE_OK;
}
